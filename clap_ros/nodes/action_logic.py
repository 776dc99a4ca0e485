"""The action node's controller, kept under its old import path: the logic lives in the ROS-free
cores (``clap_ros.runtime.action_core`` and its parts); ``ActionConfig`` is the action node's
parameter schema (``clap_ros.runtime.params.ActionParams``)."""

from __future__ import annotations

from clap_ros.runtime.action_core import (  # noqa: F401
    COMMAND_MODES,
    TRACKING_CHECK_PERIOD_S,
    WATCHED_INPUTS,
    ActionConfig,
    ActionController,
    ActionParams,
    InferenceJob,
    JobResult,
    TickOutput,
    TrajectoryCommand,
)
