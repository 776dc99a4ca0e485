"""Bundle loading and verification on the shipped models/default and on broken copies of it."""

import shutil
from pathlib import Path

import onnx
import pytest
import yaml

from clap_ros.inference.bundle import (
    GRAPH_FILES,
    BundleError,
    load_bundle,
    sha256_file,
    verify_files,
)

DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default"


def copy_bundle(tmp_path: Path) -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(DEFAULT, dst)
    return dst


def edit_manifest(bundle: Path, fn, rehash=()):
    """Apply ``fn`` to the manifest dict; refresh sha256/bytes of the graphs named in ``rehash``
    (a bad export writes a consistent hash for a bad file)."""
    path = bundle / "manifest.yaml"
    m = yaml.safe_load(path.read_text())
    fn(m)
    for name in rehash:
        e = m["graphs"][name]
        e["sha256"] = sha256_file(bundle / e["file"])
        e["bytes"] = (bundle / e["file"]).stat().st_size
    path.write_text(yaml.safe_dump(m, sort_keys=False))


def test_default_bundle_loads_with_its_facts():
    b = load_bundle(DEFAULT)
    m = yaml.safe_load((DEFAULT / "manifest.yaml").read_text())
    assert b.robot == m["robot"] == "fr3"
    assert b.joint_names == [f"fr3_joint{i}" for i in range(1, 8)]
    assert (b.latent_tokens, b.latent_dim) == (m["latent"]["tokens"], m["latent"]["dim"])
    assert (b.chunk_length, b.action_dim) == (m["chunk_length"], m["action_space"]["dim"])
    assert b.state_dim == len(b.joint_names) + 1
    assert b.chunk_dt_s == pytest.approx(1.0 / m["control_rate_hz"])
    assert set(b.graphs) == set(GRAPH_FILES)
    enc = b.graphs["encoder"]
    assert enc.inputs[0].name == "image"
    assert enc.inputs[0].concrete(2) == (2, 3, b.image_height, b.image_width)
    assert b.tokenizer.max_length == m["instruction"]["max_length"]
    assert b.tokenizer.vocab_size == m["instruction"]["vocab_size"]


def test_missing_directory_and_missing_manifest(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")
    b = copy_bundle(tmp_path)
    (b / "manifest.yaml").unlink()
    with pytest.raises(BundleError, match="no manifest.yaml in"):
        load_bundle(b)


def test_manifest_not_yaml_or_wrong_format(tmp_path):
    b = copy_bundle(tmp_path)
    (b / "manifest.yaml").write_text("graphs: [unclosed\n")
    with pytest.raises(BundleError, match="not valid YAML"):
        load_bundle(b)
    (b / "manifest.yaml").write_text("format: something_else\nversion: 1\n")
    with pytest.raises(BundleError, match="is not a clap_ros_model_bundle manifest"):
        load_bundle(b)


def test_missing_graph_file_is_named(tmp_path):
    b = copy_bundle(tmp_path)
    (b / "codebook_decoder.onnx").unlink()
    (b / "tokenizer.json").unlink()
    with pytest.raises(BundleError) as err:
        load_bundle(b)
    assert "codebook_decoder.onnx: missing" in str(err.value)
    assert "tokenizer.json: missing" in str(err.value)


def test_flipped_byte_is_a_sha256_error(tmp_path):
    b = copy_bundle(tmp_path)
    path = b / "rf_policy.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"rf_policy\.onnx: sha256 mismatch"):
        load_bundle(b)


def test_truncated_file_with_its_own_hash_is_unparsable(tmp_path):
    b = copy_bundle(tmp_path)
    path = b / "planner.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    # without a matching hash, truncation is caught as corruption (with the size difference)
    with pytest.raises(BundleError, match=r"planner\.onnx: sha256 mismatch.*bytes instead of"):
        load_bundle(b)
    edit_manifest(b, lambda m: None, rehash=["planner"])
    with pytest.raises(BundleError, match=r"planner\.onnx: not a readable ONNX model"):
        load_bundle(b)


def test_manifest_shape_that_disagrees_with_the_graph(tmp_path):
    b = copy_bundle(tmp_path)

    def wrong_state(m):  # state dim changed consistently in the manifest, but not in the graphs
        m["state"]["dim"] = 9
        for g in ("planner", "rf_policy"):
            for t in m["graphs"][g]["inputs"]:
                if t["name"] == "state":
                    t["shape"] = ["batch", 9]

    edit_manifest(b, wrong_state)
    with pytest.raises(
        BundleError, match=r"planner\.onnx: inputs do not match the manifest.*state"
    ):
        load_bundle(b)


def test_manifest_inconsistent_with_itself(tmp_path):
    b = copy_bundle(tmp_path)
    edit_manifest(b, lambda m: m["latent"].update(tokens=99))
    with pytest.raises(
        BundleError, match=r"graphs\.encoder\.outputs 'latent' has shape \[batch, 16, 64\]"
    ):
        load_bundle(b)


def test_graph_with_other_input_names(tmp_path):
    """A graph swapped in from another export (same sizes, other input name) is caught by the
    header check even when the manifest's hash matches the new file."""
    b = copy_bundle(tmp_path)
    model = onnx.load(str(b / "codebook_decoder.onnx"))
    old = model.graph.input[0].name
    model.graph.input[0].name = "tokens"
    for node in model.graph.node:
        node.input[:] = ["tokens" if i == old else i for i in node.input]
    onnx.save(model, str(b / "codebook_decoder.onnx"))
    edit_manifest(b, lambda m: None, rehash=["codebook_decoder"])
    with pytest.raises(
        BundleError, match=r"codebook_decoder\.onnx: inputs do not match.*tokens\[batch, 4\]"
    ):
        load_bundle(b)


def test_unknown_robot_and_wrong_joint_names(tmp_path):
    b = copy_bundle(tmp_path)
    edit_manifest(b, lambda m: m.update(robot="kuka_iiwa"))
    with pytest.raises(BundleError, match="robot 'kuka_iiwa'.*unknown robot"):
        load_bundle(b)
    edit_manifest(b, lambda m: m.update(robot="panda"))
    with pytest.raises(
        BundleError, match=r"joint_names \['fr3_joint1'.*do not match robot profile 'panda'"
    ):
        load_bundle(b)
    # the structural checks alone still pass: the exporter uses them for bundles of any robot
    assert load_bundle(b, check_robot=False).robot == "panda"


def test_tokenizer_length_disagrees_with_manifest(tmp_path):
    b = copy_bundle(tmp_path)
    edit_manifest(b, lambda m: m["instruction"].update(max_length=5))
    with pytest.raises(BundleError, match="tokenizer.json: max_length 12 differs"):
        load_bundle(b)


def test_training_verify_bundle_is_the_runtime_check():
    clap_bundle = pytest.importorskip("clap_train.bundle")
    assert clap_bundle.verify_bundle is verify_files
    assert clap_bundle.BundleError is BundleError


def test_zero_control_rate_is_a_valid_export_but_cannot_drive_a_robot(tmp_path):
    b = copy_bundle(tmp_path)
    edit_manifest(b, lambda m: m.update(control_rate_hz=0.0, chunk_dt_s=None))
    with pytest.raises(BundleError, match="control_rate_hz must be > 0"):
        load_bundle(b)
    assert load_bundle(b, check_robot=False).control_rate_hz == 0.0
