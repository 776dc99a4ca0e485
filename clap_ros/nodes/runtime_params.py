"""The parameters every CLAP node shares (model, backend, threads) and the runtime they build.

``declare_runtime(node)`` declares them with descriptions, loads and verifies the bundle and
creates the onnxruntime/TensorRT sessions (warmed up). Any problem becomes a ParameterError whose
one line names the parameter and the file, so ``run_node`` exits 2 with it instead of a traceback.
"""

from __future__ import annotations

from typing import Optional

from clap_ros.inference.model_paths import ModelNotFoundError, locate_model
from clap_ros.nodes.common import ParameterError, declare
from clap_ros.nodes.schema_params import declare_params
from clap_ros.runtime.params import BACKENDS, RuntimeParams  # noqa: F401  (BACKENDS re-exported)


def declare_runtime(node, calibration=None, check_robot: Optional[str] = None):
    """Declare ``model``, ``backend``, ``threads`` (and ``engine_cache_dir``) and return a
    ``ClapRuntime``. ``check_robot``: the node's robot profile name; a bundle trained for another
    robot is refused."""
    from clap_ros.inference.backends import BackendError
    from clap_ros.inference.bundle import BundleError, load_bundle
    from clap_ros.inference.policy import ClapRuntime, InferenceError

    model = declare(
        node,
        "model",
        "",
        "model bundle directory ('' = the robot profile's default_model; relative: "
        "working directory, then the ament index share/clap_ros, then the source "
        "checkout, then the install prefix)",
    )
    # backend, threads, engine_cache_dir: declared from the schema (clap_ros.runtime.params)
    rp = declare_params(node, RuntimeParams, skip=("model",))
    backend, threads, cache_dir = rp.backend, rp.threads, rp.engine_cache_dir
    found_in, path = _model_dir(node, model, check_robot)
    try:
        bundle = load_bundle(path)
    except BundleError as e:
        raise ParameterError("parameter 'model' = %r: %s" % (model, e)) from None
    if check_robot is not None and bundle.robot != check_robot:
        raise ParameterError(
            "parameter 'model' = %r: bundle is for robot '%s', this node runs "
            "robot '%s'" % (model, bundle.robot, check_robot)
        )
    try:
        rt = ClapRuntime(
            bundle,
            backend=backend,
            cache_dir=cache_dir or None,
            intra_op_num_threads=threads,
            calibration=calibration,
        )
    except BackendError as e:
        raise ParameterError("parameter 'backend' = %r: %s" % (backend, e)) from None
    except (InferenceError, OSError, RuntimeError) as e:
        raise ParameterError(
            "parameter 'model' = %r: cannot start inference (%s)" % (model, e)
        ) from None
    node.get_logger().info(
        "model %s (found in the %s; robot %s) on backend %s: %s"
        % (path, found_in, bundle.robot, rt.backend, rt.backend_reason)
    )
    return rt


def _model_dir(node, model: str, robot_name: Optional[str]):
    """(where, bundle directory) for ``model``; an empty one follows the node's ``robot`` (a
    node without one, the encoder, gets a ``robot`` parameter just for this)."""
    from clap_ros.robots import ProfileError, load_profile

    if robot_name is None:
        if node.has_parameter("robot"):
            robot_name = node.get_parameter("robot").value
        else:
            robot_name = declare(
                node,
                "robot",
                "fr3",
                "robot whose default bundle (default_model) is loaded when model is ''",
            )
    try:
        profile = load_profile(robot_name)
    except (ProfileError, OSError, ValueError) as e:
        raise ParameterError("parameter 'robot' = %r: %s" % (robot_name, e)) from None
    try:
        return locate_model(model, profile)
    except ModelNotFoundError as e:
        raise ParameterError("parameter 'model' = %r: %s" % (model, e)) from None
