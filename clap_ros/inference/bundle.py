"""Model bundle loading and verification (DESIGN.md section 5, docs/INTERFACES.md "Model bundle").

The one place that decides whether a bundle directory is usable: training's exporter
(``clap_train.bundle``) imports these checks instead of keeping its own copy. A node calls
:func:`load_bundle` at start-up so a missing, corrupt or mismatched file stops it with a message
that names the file and what is wrong, before any arm is moved.

Torch-free: yaml, hashlib, onnx (header parse only) and the robot profiles.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from clap_ros.inference.preprocess import PreprocessingError, PreprocessingSpec, spec_from_manifest
from clap_ros.inference.tokenizer import InstructionTokenizer, TokenizerError

MANIFEST = "manifest.yaml"
FORMAT = "clap_ros_model_bundle"
VERSION = 1
GRAPH_FILES = {
    "encoder": "encoder.onnx",
    "planner": "planner.onnx",
    "codebook_decoder": "codebook_decoder.onnx",
    "rf_policy": "rf_policy.onnx",
}
TOKENIZER_FILE = "tokenizer.json"
ACTION_SPACES = ("joint_abs", "joint_delta", "ee_delta")
DTYPES = ("float32", "int64")

PathLike = Union[str, Path]


class BundleError(ValueError):
    """A bundle is incomplete, or a file does not match its manifest entry."""


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# manifest and file integrity


def load_manifest(bundle_dir: PathLike) -> Dict[str, Any]:
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir():
        raise BundleError(
            f"model bundle {bundle_dir} does not exist (expected a directory with "
            f"{MANIFEST} and the ONNX graphs)"
        )
    if not path.is_file():
        raise BundleError(
            f"no {MANIFEST} in {bundle_dir}: not a model bundle, or an unfinished export"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{path} is not a {FORMAT} manifest")
    if int(data.get("version", -1)) != VERSION:
        raise BundleError(
            f"{path}: unsupported bundle version {data.get('version')!r}; "
            f"this runtime reads version {VERSION}"
        )
    return data


def verify_files(bundle_dir: PathLike) -> Dict[str, Any]:
    """Presence and sha256 of every graph of DESIGN.md section 5 and every listed file; returns
    the manifest, raises BundleError listing all problems at once otherwise."""
    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    problems: List[str] = []
    graphs = manifest.get("graphs") or {}
    if not isinstance(graphs, dict):
        raise BundleError(f"{bundle_dir / MANIFEST}: 'graphs' must be a mapping")
    for name in GRAPH_FILES:
        if name not in graphs:
            problems.append(f"graph {name} missing from manifest")
    entries = [dict(v) for v in graphs.values()]
    entries += [dict(v, file=k) for k, v in (manifest.get("files") or {}).items()]
    for entry in entries:
        rel = entry.get("file")
        if not rel:
            problems.append(f"a manifest entry has no 'file': {entry}")
            continue
        path = bundle_dir / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif "sha256" not in entry:
            problems.append(f"{rel}: no sha256 in the manifest")
        elif sha256_file(path) != entry["sha256"]:
            size = path.stat().st_size
            extra = (
                f", {size} bytes instead of {entry['bytes']}"
                if entry.get("bytes") is not None and int(entry["bytes"]) != size
                else ""
            )
            problems.append(f"{rel}: sha256 mismatch (file corrupt or changed after export{extra})")
    if problems:
        raise BundleError(f"bundle {bundle_dir} is invalid: " + "; ".join(problems))
    return manifest


# ----------------------------------------------------------------------------------------------
# typed view of a verified bundle


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: Tuple[Optional[int], ...]  # None = the dynamic batch axis
    dtype: str

    def concrete(self, batch: int = 1) -> Tuple[int, ...]:
        return tuple(batch if s is None else s for s in self.shape)


@dataclass(frozen=True)
class GraphInfo:
    name: str
    path: Path
    sha256: str
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Dict[str, Any] = field(repr=False)
    name: str
    robot: str
    joint_names: List[str]
    action_space: str
    action_names: List[str]
    action_dim: int
    chunk_length: int
    control_rate_hz: float
    image_height: int
    image_width: int
    latent_tokens: int
    latent_dim: int
    codebook_size: int
    tokens_per_chunk: int
    state_dim: int
    rf_steps: int
    graphs: Dict[str, GraphInfo] = field(repr=False)
    tokenizer: InstructionTokenizer = field(repr=False)
    # the image recipe the encoder was trained with (clap_ros.inference.preprocess)
    preprocessing: PreprocessingSpec

    @property
    def chunk_dt_s(self) -> float:
        return 1.0 / self.control_rate_hz if self.control_rate_hz > 0 else float("nan")


def _spec_list(entries: Any, where: str) -> Tuple[TensorSpec, ...]:
    if not isinstance(entries, list) or not entries:
        raise BundleError(f"{where}: must be a non-empty list of {{name, shape, dtype}}")
    out = []
    for e in entries:
        try:
            shape = tuple(None if s == "batch" else int(s) for s in e["shape"])
            spec = TensorSpec(str(e["name"]), shape, str(e["dtype"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: malformed tensor entry {e!r} ({exc})") from None
        if not shape or shape[0] is not None or any(s is None or s < 1 for s in shape[1:]):
            raise BundleError(
                f"{where}: tensor {spec.name} must have the batch axis first and "
                f"fixed positive sizes after it, got {list(e['shape'])}"
            )
        if spec.dtype not in DTYPES:
            raise BundleError(
                f"{where}: tensor {spec.name} has dtype {spec.dtype}, not one of {DTYPES}"
            )
        out.append(spec)
    return tuple(out)


_ONNX_DTYPES = {1: "float32", 7: "int64"}
_SYMBOLIC = "?"


def _onnx_specs(values) -> List[Tuple[str, Tuple[Any, ...], str]]:
    """(name, shape, dtype) with None for the batch axis and "?" for another symbolic axis."""
    out = []
    for v in values:
        tt = v.type.tensor_type
        shape = tuple(
            None
            if d.dim_param == "batch"
            else (_SYMBOLIC if (d.dim_param or not d.HasField("dim_value")) else int(d.dim_value))
            for d in tt.shape.dim
        )
        out.append((v.name, shape, _ONNX_DTYPES.get(tt.elem_type, f"onnx_type_{tt.elem_type}")))
    return out


def _compatible(want: Tuple[str, Tuple, str], found: Tuple[str, Tuple, str], output: bool) -> bool:
    if want[0] != found[0] or want[2] != found[2] or len(want[1]) != len(found[1]):
        return False
    # the exporter cannot always infer output sizes statically (they stay symbolic); the runtime
    # checks the real output shapes on every call instead
    return all(
        f == w or (output and f == _SYMBOLIC and w is not None) for w, f in zip(want[1], found[1])
    )


def check_onnx_header(path: Path, graph: GraphInfo) -> None:
    """Parse the ONNX file (weights included, they are inline) and compare its declared inputs
    and outputs with the manifest; a truncated or foreign file fails here with its name."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise BundleError(
            f"{path.name}: not a readable ONNX model (truncated or corrupt?): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if not model.graph.node:
        raise BundleError(f"{path.name}: ONNX model has an empty graph (truncated or corrupt?)")
    initializers = {i.name for i in model.graph.initializer}
    found_in = [v for v in _onnx_specs(model.graph.input) if v[0] not in initializers]
    found_out = _onnx_specs(model.graph.output)
    for kind, want, found in (
        ("inputs", graph.inputs, found_in),
        ("outputs", graph.outputs, found_out),
    ):
        want_t = [(s.name, s.shape, s.dtype) for s in want]
        if len(want_t) != len(found) or not all(
            _compatible(w, f, kind == "outputs") for w, f in zip(want_t, found)
        ):

            def fmt(items):
                return ", ".join(f"{n}{_fmt(sh)}:{dt}" for n, sh, dt in items)

            raise BundleError(
                f"{path.name}: {kind} do not match the manifest: the file declares "
                f"[{fmt(found)}], the manifest [{fmt(want_t)}]"
            )


def _require(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise BundleError(f"{where}: {message}")


def load_bundle(path: PathLike, check_onnx: bool = True, check_robot: bool = True) -> Bundle:
    """Load and verify a bundle: manifest, presence and sha256 of every file, the graphs'
    declared inputs/outputs against the manifest (and the manifest against itself: image,
    latent, state, chunk sizes), the tokenizer, and (``check_robot``) what driving an arm needs:
    the robot and joint names against the robot profile and a positive control rate. Every
    problem is a BundleError naming the file."""
    from clap_ros.robots import ProfileError, load_profile

    path = Path(path)
    m = verify_files(path)
    where = str(path / MANIFEST)
    try:
        graphs: Dict[str, GraphInfo] = {}
        for name, file in GRAPH_FILES.items():
            e = m["graphs"][name]
            graphs[name] = GraphInfo(
                name,
                path / e["file"],
                e["sha256"],
                _spec_list(e.get("inputs"), f"{where}: graphs.{name}.inputs"),
                _spec_list(e.get("outputs"), f"{where}: graphs.{name}.outputs"),
            )
        img, lat, cb = m["image"], m["latent"], m["codebook"]
        act = m["action_space"]
        bundle = Bundle(
            path=path,
            manifest=m,
            name=str(m.get("name", path.name)),
            robot=str(m["robot"]),
            joint_names=[str(j) for j in m["joint_names"]],
            action_space=str(act["type"]),
            action_names=[str(a) for a in act.get("names") or []],
            action_dim=int(act["dim"]),
            chunk_length=int(m["chunk_length"]),
            control_rate_hz=float(m["control_rate_hz"]),
            image_height=int(img["height"]),
            image_width=int(img["width"]),
            latent_tokens=int(lat["tokens"]),
            latent_dim=int(lat["dim"]),
            codebook_size=int(cb["size"]),
            tokens_per_chunk=int(cb["tokens_per_chunk"]),
            state_dim=int(m["state"]["dim"]),
            rf_steps=int(m["rf"]["num_steps"]),
            graphs=graphs,
            tokenizer=_load_tokenizer(path, m),
            preprocessing=_preprocessing(m, where),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{where}: malformed manifest ({type(exc).__name__}: {exc})") from None

    _check_consistency(bundle, where)
    if check_onnx:
        for g in graphs.values():
            check_onnx_header(g.path, g)
    if check_robot:
        # facts only a robot needs: a bundle trained on synthetic data (no fps, no profile) is
        # still a valid export, but cannot drive an arm
        _require(
            bundle.control_rate_hz > 0, where, "control_rate_hz must be > 0 to time the chunks"
        )
        try:
            profile = load_profile(bundle.robot)
        except ProfileError as exc:
            raise BundleError(f"{where}: robot '{bundle.robot}': {exc}") from None
        canon = [profile.canonical_name(j) for j in bundle.joint_names]
        if canon != list(profile.joint_names):
            raise BundleError(
                f"{where}: joint_names {bundle.joint_names} do not match robot "
                f"profile '{profile.name}' {list(profile.joint_names)}"
            )
    return bundle


def _preprocessing(m: Dict[str, Any], where: str) -> PreprocessingSpec:
    img = m["image"]
    if img.get("normalized_in_graph", True) is not True:
        raise BundleError(
            f"{where}: image.normalized_in_graph is {img['normalized_in_graph']!r}; "
            "this runtime only feeds [0, 1] RGB and leaves mean/std to the graph"
        )
    try:
        return spec_from_manifest(m.get("preprocessing"), int(img["height"]), int(img["width"]))
    except PreprocessingError as exc:
        raise BundleError(f"{where}: {exc}") from None


def _load_tokenizer(path: Path, m: Dict[str, Any]) -> InstructionTokenizer:
    rel = (m.get("instruction") or {}).get("tokenizer", TOKENIZER_FILE)
    try:
        tok = InstructionTokenizer.load(path / rel)
    except TokenizerError as exc:
        raise BundleError(f"{rel}: {exc}") from None
    max_len = (m.get("instruction") or {}).get("max_length")
    if max_len is not None and int(max_len) != tok.max_length:
        raise BundleError(
            f"{rel}: max_length {tok.max_length} differs from the manifest's {max_len}"
        )
    return tok


def _shape_of(g: GraphInfo, name: str, kind: str = "inputs") -> Tuple[Optional[int], ...]:
    for s in getattr(g, kind):
        if s.name == name:
            return s.shape
    raise BundleError(
        f"{g.path.name}: manifest lists no {kind[:-1]} named '{name}' "
        f"(has {[s.name for s in getattr(g, kind)]})"
    )


def _check_consistency(b: Bundle, where: str) -> None:
    """The graphs must agree with each other and with the manifest's scalar facts; a bundle
    assembled from mismatched exports fails here rather than deep inside onnxruntime."""
    g = b.graphs
    lat = (None, b.latent_tokens, b.latent_dim)
    chunk = (None, b.chunk_length, b.action_dim)
    plan = (None, b.tokens_per_chunk)
    state = (None, b.state_dim)
    L = b.tokenizer.max_length
    expect = [
        (g["encoder"], "image", "inputs", (None, 3, b.image_height, b.image_width)),
        (g["encoder"], "latent", "outputs", lat),
        (g["planner"], "latent", "inputs", lat),
        (g["planner"], "instruction_ids", "inputs", (None, L)),
        (g["planner"], "instruction_mask", "inputs", (None, L)),
        (g["planner"], "state", "inputs", state),
        (g["planner"], "indices", "outputs", plan),
        (g["planner"], "logits", "outputs", (None, b.tokens_per_chunk, b.codebook_size)),
        (g["codebook_decoder"], "indices", "inputs", plan),
        (g["codebook_decoder"], "chunk", "outputs", chunk),
        (g["rf_policy"], "latent", "inputs", lat),
        (g["rf_policy"], "plan_indices", "inputs", plan),
        (g["rf_policy"], "state", "inputs", state),
        (g["rf_policy"], "noise", "inputs", chunk),
        (g["rf_policy"], "actions", "outputs", chunk),
    ]
    for graph, name, kind, want in expect:
        got = _shape_of(graph, name, kind)
        _require(
            got == want,
            where,
            f"graphs.{graph.name}.{kind} '{name}' has shape "
            f"{_fmt(got)}, inconsistent with the manifest's sizes {_fmt(want)}",
        )
    _require(
        b.action_space in ACTION_SPACES,
        where,
        f"action_space.type '{b.action_space}' is not one of {ACTION_SPACES}",
    )
    _require(b.rf_steps >= 1, where, "rf.num_steps must be >= 1")
    _require(
        not b.action_names or len(b.action_names) == b.action_dim,
        where,
        f"action_space.names has {len(b.action_names)} entries for dim {b.action_dim}",
    )


def _fmt(shape: Sequence[Optional[int]]) -> str:
    return "[" + ", ".join("batch" if s is None else str(s) for s in shape) + "]"
