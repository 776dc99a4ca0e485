"""ClapRuntime on the shipped models/default (CPU): shapes, determinism, NaN detection, bad
input."""

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper

from clap_ros.inference.bundle import BundleError, load_bundle, sha256_file
from clap_ros.inference.policy import ClapRuntime, InferenceError

DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default"
INSTRUCTION = "put the red cube in the blue bowl"


@pytest.fixture(scope="module")
def runtime():
    rt = ClapRuntime(DEFAULT, backend="cpu")
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def state():
    m = yaml.safe_load((DEFAULT / "manifest.yaml").read_text())
    return np.asarray(m["normalization"]["state"]["mean"], dtype=np.float64)


def camera(seed=0, h=128, w=128):
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    img = np.stack([x % 256, y % 256, np.full_like(x, 90)], -1).astype(np.uint8)
    r, c = rng.integers(10, h - 30, 2)
    img[r : r + 20, c : c + 20] = rng.integers(0, 255, 3, dtype=np.uint8)
    return img


def test_shapes_and_dtypes(runtime, state):
    b = runtime.bundle
    latent = runtime.encode(camera())
    assert latent.shape == (b.latent_tokens, b.latent_dim) and latent.dtype == np.float32
    indices, coarse = runtime.plan(latent, INSTRUCTION, state)
    assert indices.shape == (b.tokens_per_chunk,) and indices.dtype == np.int64
    assert indices.min() >= 0 and indices.max() < b.codebook_size
    assert coarse.shape == (b.chunk_length, b.action_dim)
    chunk = runtime.act(latent, indices, state, np.random.default_rng(0))
    assert chunk.shape == (b.chunk_length, b.action_dim) and np.all(np.isfinite(chunk))
    # joint_abs: arm targets near the data's joint range (the normaliser's mean +- a few std)
    m = np.asarray(b.manifest["normalization"]["action"]["mean"])
    s = np.asarray(b.manifest["normalization"]["action"]["std"])
    assert np.all(np.abs(chunk - m) < 6 * s + 0.5)


def test_encode_depends_on_the_image_and_accepts_preprocessed_input(runtime):
    a, b = runtime.encode(camera(0)), runtime.encode(camera(1))
    assert np.abs(a - b).max() > 1e-4
    x = runtime.preprocess(camera(0))
    np.testing.assert_array_equal(runtime.encode(x), a)
    np.testing.assert_array_equal(runtime.encode(x[0]), a)
    with pytest.raises(
        InferenceError, match=r"preprocessed image must have shape \[1, 3, 64, 64\]"
    ):
        runtime.encode(np.zeros((1, 3, 32, 32), np.float32))


def test_act_is_deterministic_for_a_seed_and_varies_with_it(runtime, state):
    latent = runtime.encode(camera())
    idx, _ = runtime.plan(latent, INSTRUCTION, state)
    c1 = runtime.act(latent, idx, state, np.random.default_rng(7))
    c2 = runtime.act(latent, idx, state, np.random.default_rng(7))
    c3 = runtime.act(latent, idx, state, np.random.default_rng(8))
    np.testing.assert_array_equal(c1, c2)
    assert np.abs(c1 - c3).max() > 1e-5
    i1, p1 = runtime.plan(latent, INSTRUCTION, state)
    np.testing.assert_array_equal(i1, idx)  # greedy decoding: no randomness


def test_bad_inputs_are_clear_errors(runtime, state):
    latent = runtime.encode(camera())
    with pytest.raises(InferenceError, match="state must have 8 values"):
        runtime.plan(latent, INSTRUCTION, state[:7])
    with pytest.raises(InferenceError, match="state has non-finite values"):
        runtime.plan(latent, INSTRUCTION, np.where(np.arange(8) == 2, np.nan, state))
    with pytest.raises(InferenceError, match=r"latent must have shape \[16, 64\]"):
        runtime.plan(latent[:8], INSTRUCTION, state)
    with pytest.raises(InferenceError, match=r"plan indices must be integers in \[0, 64\)"):
        runtime.act(latent, [0, 1, 2, 64], state, np.random.default_rng(0))
    with pytest.raises(InferenceError, match="plan indices must have 4 tokens"):
        runtime.act(latent, [0, 1, 2], state, np.random.default_rng(0))


def test_latency_is_measured_per_call(runtime, state):
    latent = runtime.encode(camera())
    runtime.plan(latent, INSTRUCTION, state)
    for call in ("encode", "plan"):
        st = runtime.latency(call)
        assert st.count >= 1 and 0 < st.median_s < 5.0 and st.p99_s >= st.median_s
    assert runtime.backend == "cpu" and "requested cpu" in runtime.backend_reason


def _nan_bundle(tmp_path: Path) -> Path:
    """models/default with rf_policy's output multiplied by NaN (built with onnx.helper)."""
    dst = tmp_path / "nan_bundle"
    shutil.copytree(DEFAULT, dst)
    path = dst / "rf_policy.onnx"
    model = onnx.load(str(path))
    producer = next(n for n in model.graph.node if "actions" in n.output)
    producer.output[:] = ["actions_raw" if o == "actions" else o for o in producer.output]
    model.graph.initializer.append(
        helper.make_tensor("nan_scale", TensorProto.FLOAT, [], [float("nan")])
    )
    model.graph.node.append(helper.make_node("Mul", ["actions_raw", "nan_scale"], ["actions"]))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    mpath = dst / "manifest.yaml"
    m = yaml.safe_load(mpath.read_text())
    m["graphs"]["rf_policy"]["sha256"] = sha256_file(path)
    m["graphs"]["rf_policy"]["bytes"] = path.stat().st_size
    mpath.write_text(yaml.safe_dump(m, sort_keys=False))
    return dst


def test_nan_output_raises_inference_error(tmp_path, state):
    rt = ClapRuntime(_nan_bundle(tmp_path), backend="cpu")  # the bundle itself is valid
    latent = rt.encode(camera())
    idx, coarse = rt.plan(latent, INSTRUCTION, state)
    assert np.all(np.isfinite(coarse))
    with pytest.raises(
        InferenceError, match=r"rf_policy graph output 'actions' has 128 non-finite"
    ):
        rt.act(latent, idx, state, np.random.default_rng(0))
    rt.close()


def test_runtime_refuses_a_corrupt_bundle(tmp_path):
    dst = tmp_path / "corrupt"
    shutil.copytree(DEFAULT, dst)
    data = bytearray((dst / "encoder.onnx").read_bytes())
    data[100] ^= 0x01
    (dst / "encoder.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"encoder\.onnx: sha256 mismatch"):
        ClapRuntime(dst, backend="cpu")


def test_runtime_accepts_a_loaded_bundle(runtime):
    b = load_bundle(DEFAULT)
    rt = ClapRuntime(b, backend="cpu", warmup=False)
    lat = camera(3)
    np.testing.assert_array_equal(rt.encode(lat), runtime.encode(lat))
    rt.close()


def test_joint_targets_per_action_space(runtime, state):
    from dataclasses import replace

    chunk = np.arange(16 * 8, dtype=np.float32).reshape(16, 8) * 0.01
    np.testing.assert_array_equal(runtime.joint_targets(chunk, state), chunk.astype(np.float64))
    saved = runtime.bundle
    try:
        runtime.bundle = replace(saved, action_space="joint_delta")
        out = runtime.joint_targets(chunk, state)
        np.testing.assert_allclose(
            out[:, :7], chunk[:, :7] + state[:7].astype(np.float32), atol=1e-6
        )
        np.testing.assert_allclose(out[:, 7], chunk[:, 7], atol=1e-7)  # gripper stays absolute
        runtime.bundle = replace(saved, action_space="ee_delta")
        with pytest.raises(InferenceError, match="'ee_delta' cannot be turned into joint targets"):
            runtime.joint_targets(chunk, state)
    finally:
        runtime.bundle = saved
    with pytest.raises(InferenceError, match=r"chunk must have shape \[16, 8\]"):
        runtime.joint_targets(chunk[:4], state)


def test_plan_and_act_from_two_threads(runtime, state):
    """The planner and the action worker share one runtime in a node; results must not mix."""
    import threading

    latent = runtime.encode(camera())
    idx, coarse = runtime.plan(latent, INSTRUCTION, state)
    want = runtime.act(latent, idx, state, np.random.default_rng(5))
    errors = []

    def planner():
        for _ in range(20):
            i, c = runtime.plan(latent, INSTRUCTION, state)
            if not (np.array_equal(i, idx) and np.array_equal(c, coarse)):
                errors.append("plan differs")

    def actor():
        for _ in range(20):
            if not np.array_equal(runtime.act(latent, idx, state, np.random.default_rng(5)), want):
                errors.append("act differs")

    threads = [threading.Thread(target=planner), threading.Thread(target=actor)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
