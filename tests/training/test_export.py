"""ONNX export of the four bundle graphs: onnxruntime/torch parity, manifest, sha256, TensorRT."""

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml

from clap_ros.inference.tokenizer import InstructionTokenizer
from clap_train import bundle as B
from clap_train.act_vae import ActVAE
from clap_train.config import ActVAEConfig
from clap_train.export import export_bundle, graph_specs
from clap_train.ntp import ClapNTP, NTPConfig
from clap_train.rf import ClapPolicy, RFConfig

torch.set_num_threads(1)

K, T, S, IMG, H, A = 16, 4, 4, 32, 8, 4


def _randomise(module, seed):
    """Zero-initialised layers (adaLN-Zero gates, output heads) would make parity trivially
    exact; give every parameter a random value so the graphs compute something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    tok = InstructionTokenizer.fit(
        ["put the red cube in the bowl", "push the block left"], max_length=6
    )
    av = ActVAE(
        ActVAEConfig(
            codebook_size=K,
            code_dim=8,
            num_tokens=T,
            d_model=32,
            n_heads=2,
            enc_layers=1,
            dec_layers=1,
        ),
        A,
        H,
    ).eval()
    ntp = ClapNTP(
        NTPConfig(
            hidden_size=32,
            num_layers=2,
            num_heads=2,
            intermediate_size=64,
            obs_width=16,
            max_instruction_len=6,
        ),
        image_size=IMG,
        codebook_size=K,
        num_tokens=T,
        state_dim=S,
        vocab_size=tok.vocab_size,
    )
    ntp.set_state_stats([0.1, -0.2, 0.3, 0.5], [1.0, 2.0, 0.5, 0.3])
    pol = ClapPolicy(
        RFConfig(d_model=32, num_layers=2, num_heads=2, km_weight=0.0),
        ntp,
        av.codebook.weight,
        action_dim=A,
        chunk_len=H,
    )
    pol.set_action_stats([0.0, 1.0, -1.0, 0.5], [1.0, 0.5, 2.0, 0.3])
    _randomise(pol, 1)
    _randomise(av, 2)
    stats = dict(
        action_mean=[0.0, 1.0, -1.0, 0.5],
        action_std=[1.0, 0.5, 2.0, 0.3],
        state_mean=[0.1, -0.2, 0.3, 0.5],
        state_std=[1.0, 2.0, 0.5, 0.3],
        robot="fr3",
        joint_names=["j1", "j2", "j3"],
        action_names=["j1", "j2", "j3", "gripper"],
        state_names=["j1", "j2", "j3", "gripper"],
        action_space="joint_abs",
        fps=15.0,
    )
    return pol.eval(), av, tok, stats


@pytest.fixture(scope="module")
def bundle_dir(models, tmp_path_factory):
    pol, av, tok, stats = models
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    export_bundle(
        pol,
        av,
        out,
        stats=stats,
        tokenizer=tok,
        provenance={
            "data": {"robot_dataset": "synthetic"},
            "metrics": {"rf_mse": 0.1},
            "config": {"seed": 0},
        },
        progress=False,
    )
    return out


def test_bundle_files_and_manifest(bundle_dir, models):
    pol, av, tok, stats = models
    names = sorted(p.name for p in bundle_dir.iterdir())
    assert names == [
        "codebook_decoder.onnx",
        "encoder.onnx",
        "manifest.yaml",
        "planner.onnx",
        "rf_policy.onnx",
        "tokenizer.json",
    ]
    m = yaml.safe_load((bundle_dir / "manifest.yaml").read_text())
    assert m["format"] == "clap_ros_model_bundle" and m["robot"] == "fr3"
    assert m["chunk_length"] == H and m["control_rate_hz"] == 15.0
    assert m["action_space"]["type"] == "joint_abs" and m["action_space"]["dim"] == A
    assert m["codebook"] == {"size": K, "dim": 8, "tokens_per_chunk": T}
    assert m["image"]["height"] == IMG and m["image"]["layout"] == "NCHW"
    # the exporter names the runtime's recipe, and the runtime reads it back
    assert (m["preprocessing"]["name"], m["preprocessing"]["version"]) == ("rgb_area_unit", 1)
    assert m["preprocessing"]["size"] == [IMG, IMG]
    from clap_ros.inference.bundle import load_bundle

    assert load_bundle(bundle_dir, check_robot=False).preprocessing.height == IMG
    assert m["rf"]["num_steps"] == 4
    assert m["normalization"]["action"]["std"] == stats["action_std"]
    assert m["graphs"]["planner"]["outputs"][0] == {
        "name": "indices",
        "shape": ["batch", T],
        "dtype": "int64",
    }
    prov = m["provenance"]
    assert prov["metrics"] == {"rf_mse": 0.1} and prov["config"] == {"seed": 0}
    assert "git_commit" in prov and prov["parity"]["atol"] == 1e-4
    assert InstructionTokenizer.load(bundle_dir / "tokenizer.json") == tok


def test_manifest_sha256_matches_files_and_tampering_is_caught(bundle_dir, tmp_path):
    m = B.verify_bundle(bundle_dir)
    for name, entry in m["graphs"].items():
        assert entry["sha256"] == B.sha256_file(bundle_dir / entry["file"])
    assert m["files"]["tokenizer.json"]["sha256"] == B.sha256_file(bundle_dir / "tokenizer.json")
    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    with open(copy / "planner.onnx", "ab") as f:
        f.write(b"\0")
    (copy / "encoder.onnx").unlink()
    with pytest.raises(B.BundleError) as err:
        B.verify_bundle(copy)
    assert "planner.onnx: sha256 mismatch" in str(err.value)
    assert "encoder.onnx: missing" in str(err.value)


def test_parity_every_graph_batch_1_and_3(bundle_dir, models):
    """Independent of the exporter's own check: run each ONNX graph with onnxruntime and compare
    with the torch module on fresh inputs."""
    pol, av, tok, stats = models
    specs = graph_specs(pol, av, stats["action_mean"], stats["action_std"], 4)
    for spec in specs:
        path = bundle_dir / B.GRAPH_FILES[spec.name]
        model = onnx.load(str(path))
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == [n for n, _, _ in spec.inputs]
        for b in (1, 3):
            args = spec.make_inputs(b, torch.Generator().manual_seed(100 + b))
            with torch.no_grad():
                ref = spec.module(*args)
            ref = ref if isinstance(ref, tuple) else (ref,)
            outs = sess.run(None, {n: a.numpy() for (n, _, _), a in zip(spec.inputs, args)})
            for (name, shape, dtype), r, o in zip(spec.outputs, ref, outs):
                assert o.shape == (b, *shape), (spec.name, name)
                if dtype == "int64":
                    np.testing.assert_array_equal(o, r.numpy())
                else:
                    diff = float(np.abs(o - r.numpy()).max())
                    assert diff < 1e-4, (spec.name, name, b, diff)
                    assert float(np.abs(r.numpy()).max()) > 1e-3  # not a trivially-zero output


def test_graph_outputs_are_meaningful(bundle_dir, models):
    """The planner's indices are the greedy tokens; the decoder de-normalises; the RF graph
    depends on its noise input (it is a sampler, not a constant)."""
    pol, av, tok, stats = models
    enc = ort.InferenceSession(str(bundle_dir / "encoder.onnx"))
    plan = ort.InferenceSession(str(bundle_dir / "planner.onnx"))
    dec = ort.InferenceSession(str(bundle_dir / "codebook_decoder.onnx"))
    rf = ort.InferenceSession(str(bundle_dir / "rf_policy.onnx"))
    img = np.random.default_rng(0).random((2, 3, IMG, IMG), dtype=np.float32)
    latent = enc.run(None, {"image": img})[0]
    ids, mask = tok.encode_batch(["put the red cube in the bowl", "push the block left"])
    state = np.zeros((2, S), np.float32)
    idx, logits = plan.run(
        None, {"latent": latent, "instruction_ids": ids, "instruction_mask": mask, "state": state}
    )
    np.testing.assert_array_equal(idx, logits.argmax(-1))
    chunk = dec.run(None, {"indices": idx})[0]
    with torch.no_grad():
        ref = av.decode_indices(torch.from_numpy(idx)) * torch.tensor(
            stats["action_std"]
        ) + torch.tensor(stats["action_mean"])
    np.testing.assert_allclose(chunk, ref.numpy(), atol=1e-4)
    n1 = np.zeros((2, H, A), np.float32)
    n2 = np.ones((2, H, A), np.float32)
    a1 = rf.run(None, {"latent": latent, "plan_indices": idx, "state": state, "noise": n1})[0]
    a2 = rf.run(None, {"latent": latent, "plan_indices": idx, "state": state, "noise": n2})[0]
    assert a1.shape == (2, H, A) and np.abs(a1 - a2).max() > 1e-3


def test_engine_cache_key_depends_on_every_part():
    base = B.engine_cache_key("NVIDIA H100", "10.3.0", "abc", "fp16")
    assert base == B.engine_cache_key("NVIDIA H100", "10.3.0", "abc", "fp16")
    others = {
        B.engine_cache_key("NVIDIA L4", "10.3.0", "abc", "fp16"),
        B.engine_cache_key("NVIDIA H100", "10.4.0", "abc", "fp16"),
        B.engine_cache_key("NVIDIA H100", "10.3.0", "abd", "fp16"),
        B.engine_cache_key("NVIDIA H100", "10.3.0", "abc", "fp32"),
    }
    assert base not in others and len(others) == 4


@pytest.mark.gpu
def test_tensorrt_fp16_engine_build_and_cache(bundle_dir, tmp_path):
    pytest.importorskip("tensorrt")
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no CUDA GPU (nvidia-smi missing)")
    path = B.build_tensorrt_engine(bundle_dir / "encoder.onnx", tmp_path / "engines", "fp16")
    assert path.is_file() and path.stat().st_size > 0
    mtime = path.stat().st_mtime_ns
    again = B.build_tensorrt_engine(bundle_dir / "encoder.onnx", tmp_path / "engines", "fp16")
    assert again == path and again.stat().st_mtime_ns == mtime  # served from the cache


SHIPPED = __import__("pathlib").Path(__file__).resolve().parents[2] / "models" / "default"


@pytest.mark.skipif(not (SHIPPED / "manifest.yaml").is_file(), reason="no shipped models/default")
def test_shipped_default_bundle_is_valid_and_runs_with_onnxruntime_only():
    m = B.verify_bundle(SHIPPED)
    assert m["robot"] == "fr3" and m["action_space"]["dim"] == len(m["joint_names"]) + 1
    assert (
        max(v for g in m["provenance"]["parity"]["max_abs_diff"].values() for v in g.values())
        < 1e-4
    )
    # held-out error recorded at training time beats predicting the mean chunk
    assert m["provenance"]["metrics"]["rf_mse"] < m["provenance"]["metrics"]["mean_chunk_mse"]
    sess = {n: ort.InferenceSession(str(SHIPPED / g["file"])) for n, g in m["graphs"].items()}
    tok = InstructionTokenizer.load(SHIPPED / m["instruction"]["tokenizer"])
    h, w = m["image"]["height"], m["image"]["width"]
    img = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    state = np.asarray([m["normalization"]["state"]["mean"]], np.float32)
    ids, mask = tok.encode_batch(["put the red cube in the blue bowl"])
    latent = sess["encoder"].run(None, {"image": img})[0]
    idx, _ = sess["planner"].run(
        None, {"latent": latent, "instruction_ids": ids, "instruction_mask": mask, "state": state}
    )
    coarse = sess["codebook_decoder"].run(None, {"indices": idx})[0]
    noise = (
        np.random.default_rng(1)
        .standard_normal((1, m["chunk_length"], m["action_space"]["dim"]))
        .astype(np.float32)
    )
    act = sess["rf_policy"].run(
        None, {"latent": latent, "plan_indices": idx, "state": state, "noise": noise}
    )[0]
    assert idx.shape == (1, m["codebook"]["tokens_per_chunk"]) and idx.max() < m["codebook"]["size"]
    assert coarse.shape == act.shape == (1, m["chunk_length"], m["action_space"]["dim"])
    assert np.isfinite(act).all()
    from clap_ros.robots import load_profile

    lim = load_profile("fr3").limits
    arm = act[0, :, :-1]
    assert (arm > lim.lower - 0.5).all() and (arm < lim.upper + 0.5).all()  # plausible joints
