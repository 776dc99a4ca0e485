"""Plain-Python pieces of the CLAP nodes, kept under their old import path.

The message checks moved to ``clap_ros.runtime.messages`` (ROS-free cores); this module
re-exports them and ``resolve_model_dir`` (the ``model`` parameter -> a bundle directory, from
``clap_ros.inference.model_paths``).
"""

from __future__ import annotations

# The model lookup lives with the bundle code (clap_ros.inference.model_paths).
from clap_ros.inference.model_paths import resolve_model_dir  # noqa: F401
from clap_ros.runtime.messages import (  # noqa: F401
    GRIPPER_JOINT_NAME,
    LATENT_ENCODING,
    InputError,
    LatestSlot,
    check_joint_state,
    latent_from_image,
    latent_to_bytes,
    plan_points,
    state_from_joint_state,
)
