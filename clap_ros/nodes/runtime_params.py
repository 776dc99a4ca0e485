"""The parameters every CLAP node shares (model, backend, threads) and the runtime they build.

``declare_runtime(node)`` declares them with descriptions, loads and verifies the bundle and
creates the onnxruntime/TensorRT sessions (warmed up). Any problem becomes a ParameterError whose
one line names the parameter and the file, so ``run_node`` exits 2 with it instead of a traceback.
"""
from __future__ import annotations

from typing import Optional

from clap_ros.nodes.clap_logic import resolve_model_dir
from clap_ros.nodes.common import ParameterError, declare

BACKENDS = ("auto", "cpu", "cuda", "tensorrt")


def declare_runtime(node, calibration=None, check_robot: Optional[str] = None):
    """Declare ``model``, ``backend``, ``threads`` (and ``engine_cache_dir``) and return a
    ``ClapRuntime``. ``check_robot``: the node's robot profile name; a bundle trained for another
    robot is refused."""
    from clap_ros.inference.backends import BackendError
    from clap_ros.inference.bundle import BundleError, load_bundle
    from clap_ros.inference.policy import ClapRuntime, InferenceError

    model = declare(node, "model", "models/default",
                    "model bundle directory (relative: working directory, then the "
                    "package/repository, then share/clap_ros)")
    backend = declare(node, "backend", "auto",
                      "inference backend; auto picks the best available and logs why",
                      choices=BACKENDS)
    threads = declare(node, "threads", 1, "onnxruntime intra-op threads per graph",
                      min_value=1, max_value=64)
    cache_dir = declare(node, "engine_cache_dir", "",
                        "TensorRT engine cache directory ('' = default cache)")
    path = resolve_model_dir(model)
    try:
        bundle = load_bundle(path)
    except BundleError as e:
        raise ParameterError("parameter 'model' = %r: %s" % (model, e)) from None
    if check_robot is not None and bundle.robot != check_robot:
        raise ParameterError("parameter 'model' = %r: bundle is for robot '%s', this node runs "
                             "robot '%s'" % (model, bundle.robot, check_robot))
    try:
        rt = ClapRuntime(bundle, backend=backend, cache_dir=cache_dir or None,
                         intra_op_num_threads=threads, calibration=calibration)
    except BackendError as e:
        raise ParameterError("parameter 'backend' = %r: %s" % (backend, e)) from None
    except (InferenceError, OSError, RuntimeError) as e:
        raise ParameterError("parameter 'model' = %r: cannot start inference (%s)"
                             % (model, e)) from None
    node.get_logger().info("model %s (robot %s) on backend %s: %s"
                           % (path, bundle.robot, rt.backend, rt.backend_reason))
    return rt
