"""Backend selection (with injected provider lists, so every branch runs on a CPU-only machine),
onnxruntime CPU sessions, and the GPU paths (CUDA EP, TensorRT EP, native TensorRT engines), which
skip cleanly where there is no GPU."""

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from clap_ros.inference.backends import (
    CPU_EP,
    CUDA_EP,
    TRT_EP,
    BackendError,
    create_session,
    select_backend,
)
from clap_ros.inference.tensorrt_engine import engine_cache_key, tensorrt_available

DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default"


def no_native():
    return "python package 'tensorrt' not importable"


def native_ok():
    return None


def test_auto_on_a_cpu_only_machine_says_why():
    c = select_backend("auto", [CPU_EP], no_native)
    assert (c.backend, c.providers) == ("cpu", (CPU_EP,))
    assert "tensorrt: no TensorrtExecutionProvider" in c.reason
    assert "tensorrt' not importable" in c.reason
    assert "cuda: no CUDAExecutionProvider" in c.reason and c.reason.endswith("auto -> cpu")


def test_auto_prefers_tensorrt_then_cuda():
    c = select_backend("auto", [TRT_EP, CUDA_EP, CPU_EP], no_native)
    assert (c.backend, c.engine, c.providers) == (
        "tensorrt",
        "onnxruntime",
        (TRT_EP, CUDA_EP, CPU_EP),
    )
    c = select_backend("auto", [CUDA_EP, CPU_EP], no_native)
    assert (c.backend, c.providers) == ("cuda", (CUDA_EP, CPU_EP))
    assert "tensorrt: no TensorrtExecutionProvider" in c.reason and "auto -> cuda" in c.reason
    c = select_backend("auto", [CUDA_EP, CPU_EP], native_ok)
    assert (c.backend, c.engine, c.providers) == ("tensorrt", "tensorrt-native", ())


def test_explicit_backends():
    assert select_backend("cpu", [TRT_EP, CUDA_EP, CPU_EP], native_ok).backend == "cpu"
    assert select_backend("cuda", [CUDA_EP, CPU_EP], no_native).providers == (CUDA_EP, CPU_EP)
    c = select_backend("tensorrt", [CPU_EP], native_ok)
    assert c.engine == "tensorrt-native" and c.reason.startswith("requested tensorrt")


def test_explicit_unavailable_backend_is_an_error_not_a_fallback():
    with pytest.raises(
        BackendError, match="backend 'cuda' requested but unavailable: no CUDAExecutionProvider"
    ):
        select_backend("cuda", [CPU_EP], native_ok)
    with pytest.raises(
        BackendError, match="backend 'tensorrt' requested but unavailable.*not importable"
    ):
        select_backend("tensorrt", [CUDA_EP, CPU_EP], no_native)
    with pytest.raises(BackendError, match="unknown backend 'gpu'"):
        select_backend("gpu", [CPU_EP], no_native)


def test_real_provider_list_on_this_machine():
    c = select_backend("auto")
    avail = ort.get_available_providers()
    if CUDA_EP not in avail and tensorrt_available() is not None:
        assert c.backend == "cpu"
    assert c.reason  # always explains itself


def test_cpu_session_runs_warms_up_and_times():
    s = create_session(DEFAULT / "codebook_decoder.onnx", "cpu", intra_op_num_threads=1)
    assert s.backend == "cpu" and s.input_names == ["indices"] and s.output_names == ["chunk"]
    out = s.run({"indices": np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.int64)})
    assert out["chunk"].shape == (2, 16, 8) and out["chunk"].dtype == np.float32
    assert not np.allclose(out["chunk"][0], out["chunk"][1])
    assert len(s.latency_s) == 1 and s.latency_s[0] > 0
    with pytest.raises(BackendError, match="missing inputs \\['indices'\\]"):
        s.run({})


def test_create_session_errors(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        create_session(tmp_path / "none.onnx", "cpu")
    with pytest.raises(BackendError, match="intra_op_num_threads must be >= 0"):
        create_session(DEFAULT / "encoder.onnx", "cpu", intra_op_num_threads=-1)
    with pytest.raises(BackendError, match="backend 'cuda' requested but unavailable"):
        create_session(DEFAULT / "encoder.onnx", "cuda", available_providers=[CPU_EP])
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="bad.onnx: onnxruntime could not create a cpu session"):
        create_session(bad, "cpu")


def test_engine_cache_key_depends_on_every_part():
    base = engine_cache_key("NVIDIA H100", "10.3.0", "abc", "fp16")
    assert base == engine_cache_key("NVIDIA H100", "10.3.0", "abc", "fp16")
    others = {
        engine_cache_key("NVIDIA L4", "10.3.0", "abc", "fp16"),
        engine_cache_key("NVIDIA H100", "10.4.0", "abc", "fp16"),
        engine_cache_key("NVIDIA H100", "10.3.0", "abd", "fp16"),
        engine_cache_key("NVIDIA H100", "10.3.0", "abc", "fp32"),
    }
    assert base not in others and len(others) == 4


# -- GPU paths (device machine) -------------------------------------------------------------------


def _encoder_feeds():
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    return {"image": x}


@pytest.mark.gpu
def test_cuda_execution_provider_matches_cpu():
    if CUDA_EP not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDAExecutionProvider here")
    cpu = create_session(DEFAULT / "encoder.onnx", "cpu")
    gpu = create_session(DEFAULT / "encoder.onnx", "cuda")
    assert gpu.backend == "cuda"
    feeds = _encoder_feeds()
    np.testing.assert_allclose(gpu.run(feeds)["latent"], cpu.run(feeds)["latent"], atol=1e-3)


@pytest.mark.gpu
def test_tensorrt_execution_provider_with_engine_cache(tmp_path):
    if TRT_EP not in ort.get_available_providers() or CUDA_EP not in ort.get_available_providers():
        pytest.skip("onnxruntime has no TensorrtExecutionProvider here")
    cpu = create_session(DEFAULT / "encoder.onnx", "cpu")
    trt = create_session(DEFAULT / "encoder.onnx", "tensorrt", cache_dir=tmp_path, precision="fp32")
    assert trt.choice.engine == "onnxruntime"
    feeds = _encoder_feeds()
    np.testing.assert_allclose(trt.run(feeds)["latent"], cpu.run(feeds)["latent"], atol=1e-2)
    assert any(tmp_path.iterdir()), "TensorRT EP wrote no engine cache"


@pytest.mark.gpu
def test_native_tensorrt_engine_build_cache_and_run(tmp_path):
    pytest.importorskip("tensorrt")
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no CUDA GPU (nvidia-smi missing)")
    why = tensorrt_available()
    if why is not None:
        pytest.skip(why)
    from clap_ros.inference.tensorrt_engine import TensorRTEngineSession, build_tensorrt_engine

    onnx_path = DEFAULT / "encoder.onnx"
    path = build_tensorrt_engine(onnx_path, tmp_path, "fp32")
    assert path.is_file() and path.stat().st_size > 0
    mtime = path.stat().st_mtime_ns
    assert build_tensorrt_engine(onnx_path, tmp_path, "fp32") == path
    assert path.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert build_tensorrt_engine(onnx_path, tmp_path, "fp16") != path
    cpu = create_session(onnx_path, "cpu")
    eng = TensorRTEngineSession(path)
    feeds = _encoder_feeds()
    np.testing.assert_allclose(eng.run(feeds)["latent"], cpu.run(feeds)["latent"], atol=1e-3)
    # batch 3 through the dynamic profile
    x3 = {"image": np.random.default_rng(1).random((3, 3, 64, 64), dtype=np.float32)}
    np.testing.assert_allclose(eng.run(x3)["latent"], cpu.run(x3)["latent"], atol=1e-3)
    eng.close()
    s = create_session(
        DEFAULT / "rf_policy.onnx", "tensorrt", cache_dir=tmp_path, available_providers=[CPU_EP]
    )
    assert s.choice.engine == "tensorrt-native"
    out = s.run(s.dummy_feeds())
    assert out["actions"].shape == (1, 16, 8) and np.all(np.isfinite(out["actions"]))


def test_native_tensorrt_absence_is_explained():
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here; its absence cannot be tested")
    except ImportError:
        pass
    from clap_ros.inference.tensorrt_engine import TensorRTError, build_tensorrt_engine

    assert "tensorrt" in tensorrt_available()
    with pytest.raises(TensorRTError, match="native TensorRT needs the 'tensorrt' package"):
        build_tensorrt_engine(DEFAULT / "encoder.onnx", "/tmp/unused-engines")


def test_session_casts_inputs_to_the_graph_dtypes():
    s = create_session(DEFAULT / "codebook_decoder.onnx", "cpu", warmup=False)
    a = s.run({"indices": [[0, 1, 2, 3]]})["chunk"]  # python ints
    b = s.run({"indices": np.array([[0, 1, 2, 3]], np.int32)})["chunk"]
    np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore:Specified provider")  # onnxruntime's own warning, expected here
def test_auto_moves_on_when_a_listed_provider_cannot_start():
    """onnxruntime-gpu lists CUDA even without a driver; auto must then fall back and say why,
    while an explicit request for it fails."""
    if CUDA_EP in ort.get_available_providers() or tensorrt_available() is None:
        pytest.skip("a usable GPU backend is present here")
    s = create_session(
        DEFAULT / "codebook_decoder.onnx",
        "auto",
        available_providers=[CUDA_EP, CPU_EP],
        warmup=False,
    )
    assert s.backend == "cpu"
    assert "cuda listed but failed" in s.reason and s.reason.endswith("auto -> cpu")
    with pytest.raises(BackendError, match="asked onnxruntime for CUDAExecutionProvider"):
        create_session(
            DEFAULT / "codebook_decoder.onnx",
            "cuda",
            available_providers=[CUDA_EP, CPU_EP],
            warmup=False,
        )
