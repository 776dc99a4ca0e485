"""Parameter schemas: one typed dataclass per node listing every parameter once.

A schema field is declared with ``param(default, description, unit=, low=, high=, choices=)``;
the field name is the ROS parameter name. The same schema is used by

* the nodes, which declare their ROS parameters from it (``clap_ros.nodes.schema_params``:
  descriptions, ranges as FloatingPointRange / IntegerRange, choices) and read them back;
* evaluators and CLIs, which fill it (``Schema.from_mapping`` / ``replace``);
* the config check (``tests/unit/test_param_schemas.py`` validates ``config/*.yaml``).

So no default exists anywhere else. ``validate()`` refuses a bad value with ``ParamError`` naming
the parameter and its allowed range. No rclpy import here (the runtime cores use this module).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar

S = TypeVar("S", bound="Schema")

# Parameters every ROS node has; a params file may set them although no schema lists them.
ROS_RESERVED = ("use_sim_time",)


class ParamError(ValueError):
    """A parameter value the node cannot work with; the message names the parameter and range."""


@dataclass(frozen=True)
class Param:
    """One parameter: name, default, description, unit, allowed range or choices."""

    name: str
    default: Any
    description: str
    unit: str = ""
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[Tuple[str, ...]] = None
    read_only: bool = False

    @property
    def kind(self) -> type:
        """bool, int, float or str (the default's type; bool is checked before int)."""
        for k in (bool, int, float, str):
            if isinstance(self.default, k):
                return k
        raise TypeError("parameter %r: unsupported default %r" % (self.name, self.default))

    def allowed(self) -> str:
        """The allowed values as a user reads them: "0.001 .. 60 s", "one of: a, b"."""
        if self.choices:
            return "one of: %s" % ", ".join(self.choices)
        unit = (" " + self.unit) if self.unit else ""
        if self.low is not None and self.high is not None:
            return "%s .. %s%s" % (_num(self.low), _num(self.high), unit)
        if self.low is not None:
            return ">= %s%s" % (_num(self.low), unit)
        if self.high is not None:
            return "<= %s%s" % (_num(self.high), unit)
        return "any %s" % self.kind.__name__

    def check(self, value: Any) -> Any:
        """``value`` converted to this parameter's type (an int for a float parameter becomes a
        float, as ``-p rate:=15`` arrives), or ParamError naming the parameter and range."""
        k = self.kind
        bad = ParamError(
            "parameter '%s' = %r: must be %s (%s)"
            % (self.name, value, _kind_text(k), self.allowed())
        )
        if k is bool:
            if not isinstance(value, bool):
                raise bad
        elif k is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad
        elif k is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad
            value = float(value)
            if not math.isfinite(value):
                raise bad
        elif not isinstance(value, str):
            raise bad
        if self.choices is not None and value not in self.choices:
            raise ParamError("parameter '%s' = %r: must be %s" % (self.name, value, self.allowed()))
        if k in (int, float):
            if (self.low is not None and value < self.low) or (
                self.high is not None and value > self.high
            ):
                raise ParamError(
                    "parameter '%s' = %r: out of range, allowed %s"
                    % (self.name, value, self.allowed())
                )
        return value

    def describe(self) -> str:
        """One line for ``ros2 param describe`` and the docs: description [unit] (allowed)."""
        unit = " [%s]" % self.unit if self.unit else ""
        return "%s%s (%s; default %r)" % (self.description, unit, self.allowed(), self.default)


def _num(v: float) -> str:
    return "%g" % v


def _kind_text(k: type) -> str:
    return {bool: "a boolean", int: "an integer", float: "a finite number", str: "a string"}[k]


def param(
    default: Any,
    description: str,
    unit: str = "",
    low: Optional[float] = None,
    high: Optional[float] = None,
    choices: Optional[Sequence[str]] = None,
    read_only: bool = False,
) -> Any:
    """A schema field. The name is filled from the field name by ``Schema.specs``."""
    meta = {
        "param": Param(
            "",
            default,
            description,
            unit,
            low,
            high,
            tuple(choices) if choices is not None else None,
            read_only,
        )
    }
    return field(default=default, metadata=meta)


class Schema:
    """Base of the per-node parameter dataclasses (subclasses are ``@dataclass``)."""

    @classmethod
    def specs(cls) -> List[Param]:
        """Every parameter of this schema, in declaration order, with its name."""
        out = []
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            p = f.metadata.get("param")
            if p is not None:
                out.append(dataclasses.replace(p, name=f.name))
        return out

    @classmethod
    def spec(cls, name: str) -> Param:
        for p in cls.specs():
            if p.name == name:
                return p
        raise KeyError(name)

    @classmethod
    def names(cls) -> List[str]:
        return [p.name for p in cls.specs()]

    @classmethod
    def from_mapping(
        cls: Type[S], values: Optional[Mapping[str, Any]] = None, strict: bool = True
    ) -> S:
        """A validated instance: defaults overridden by ``values``. ``strict``: an unknown key is
        a ParamError (a typo in a YAML or a CLI must not be silently ignored); ROS's own
        parameters (use_sim_time) are accepted and ignored."""
        values = dict(values or {})
        known = set(cls.names())
        unknown = sorted(k for k in values if k not in known and k not in ROS_RESERVED)
        if unknown and strict:
            raise ParamError(
                "unknown parameter(s) %s; %s takes: %s"
                % (", ".join(unknown), cls.__name__, ", ".join(sorted(known)))
            )
        kw = {k: v for k, v in values.items() if k in known}
        obj = cls(**kw)
        obj.validate()
        return obj

    def validate(self: S) -> S:
        """Check (and normalise: int -> float) every field, then the cross-field rules of
        ``check``. Returns self, so ``Params(...).validate()`` reads well."""
        for p in self.specs():
            object.__setattr__(self, p.name, p.check(getattr(self, p.name)))
        self.check()
        return self

    def check(self) -> None:
        """Rules between parameters (override; raise ParamError naming both)."""

    def replace(self: S, **changes: Any) -> S:
        """A validated copy with ``changes`` (field names = parameter names)."""
        known = set(self.names())
        unknown = sorted(k for k in changes if k not in known)
        if unknown:
            raise ParamError(
                "unknown parameter(s) %s for %s" % (", ".join(unknown), type(self).__name__)
            )
        return dataclasses.replace(self, **changes).validate()  # type: ignore[type-var]

    def to_dict(self) -> Dict[str, Any]:
        return {p.name: getattr(self, p.name) for p in self.specs()}

    def overrides(self) -> Dict[str, Any]:
        """Only the values that differ from the defaults (e.g. to pass to a spawned node)."""
        return {
            p.name: getattr(self, p.name)
            for p in self.specs()
            if getattr(self, p.name) != p.default
        }

    @classmethod
    def markdown_table(cls) -> str:
        """The schema as a Markdown table (docs)."""
        rows = ["| parameter | default | unit | allowed | description |", "|---|---|---|---|---|"]
        for p in cls.specs():
            rows.append(
                "| `%s` | `%r` | %s | %s | %s |"
                % (p.name, p.default, p.unit, p.allowed(), p.description)
            )
        return "\n".join(rows)


# --- the node schemas ---------------------------------------------------------------------------
BACKENDS = ("auto", "cpu", "cuda", "tensorrt")
COMMAND_MODES = ("joint_trajectory", "forward_position")
# Inputs the action node watches. The latent carries the camera frame's stamp, so its age is the
# camera's age plus the encoder's latency: one threshold covers both.
WATCHED_INPUTS = ("latent", "plan", "joint_states")


@dataclass
class RuntimeParams(Schema):
    """What every CLAP node needs to run the bundle (declared by nodes/runtime_params.py)."""

    model: str = param(
        "",
        "model bundle directory ('' = the robot profile's default_model; "
        "relative: working directory, then the ament index share/clap_ros, then "
        "the source checkout, then the install prefix)",
    )
    backend: str = param(
        "auto", "inference backend; auto picks the best available and logs why", choices=BACKENDS
    )
    threads: int = param(1, "onnxruntime intra-op threads per graph", low=1, high=64)
    engine_cache_dir: str = param("", "TensorRT engine cache directory ('' = default cache)")

    RUNTIME_NAMES = ("model", "backend", "threads", "engine_cache_dir")


@dataclass
class EncoderParams(RuntimeParams):
    """encoder_node: camera images -> /clap/latent."""

    robot: str = param(
        "fr3", "robot whose default bundle (default_model) is loaded when model is ''"
    )
    image_topic: str = param("/camera/image_raw", "camera image to encode")
    camera_info_topic: str = param(
        "/camera/camera_info", "CameraInfo of that camera (used unless calibration_file is set)"
    )
    calibration_file: str = param("", "camera_info YAML to undistort with ('' = use CameraInfo)")
    max_rate_hz: float = param(
        0.0, "most latents per second (0 = encode every frame)", "Hz", low=0.0, high=1000.0
    )
    require_camera_info: bool = param(True, "drop frames until a calibration is known")


@dataclass
class PlannerParams(RuntimeParams):
    """planner_node: instruction + latent + joint states -> /clap/plan."""

    robot: str = param("fr3", "robot profile: fr3, panda, ur5e or a profile YAML path")
    joint_states_topic: str = param("", "joint states topic ('' = the robot profile's)")
    planner_rate_hz: float = param(5.0, "plans per second (at most)", "Hz", low=0.1, high=100.0)
    instruction: str = param("", "task instruction at start-up ('' = wait for /clap/instruction)")
    max_latent_age_s: float = param(
        1.0, "do not plan on a latent older than this (0 = no check)", "s", low=0.0, high=3600.0
    )
    max_state_age_s: float = param(
        0.5, "do not plan on joint states older than this (0 = no check)", "s", low=0.0, high=3600.0
    )
    max_instruction_chars: int = param(
        1000,
        "an instruction longer than this is refused (not planned with)",
        "chars",
        low=1,
        high=100000,
    )

    def check(self) -> None:
        if len(self.instruction) > self.max_instruction_chars:
            raise ParamError(
                "parameter 'instruction': %d characters, more than "
                "max_instruction_chars (%d)" % (len(self.instruction), self.max_instruction_chars)
            )


@dataclass
class ActionParams(RuntimeParams):
    """action_node: chunks -> safe arm commands. Also the controller's config (ActionConfig)."""

    robot: str = param("fr3", "robot profile: fr3, panda, ur5e or a profile YAML path")
    joint_states_topic: str = param("", "joint states ('' = the robot profile's)")
    command_mode: str = param(
        "joint_trajectory",
        "joint_trajectory (one trajectory per chunk, the controller "
        "interpolates) or forward_position (stream at command_rate_hz)",
        choices=COMMAND_MODES,
    )
    command_rate_hz: float = param(
        500.0, "forward_position stream rate", "Hz", low=1.0, high=2000.0
    )
    supervision_rate_hz: float = param(
        100.0, "state-machine rate in joint_trajectory mode", "Hz", low=1.0, high=1000.0
    )
    enable_on_start: bool = param(False, "start enabled instead of waiting for ~/enable")
    watchdog_latent_s: float = param(
        0.5, "max age of the newest latent (its camera frame's stamp)", "s", low=0.001, high=60.0
    )
    watchdog_plan_s: float = param(
        1.0, "max age of the newest plan (its source frame's stamp)", "s", low=0.001, high=60.0
    )
    watchdog_joint_states_s: float = param(
        0.2, "max age of the newest joint_states", "s", low=0.001, high=60.0
    )
    tracking_tolerance_rad: float = param(
        0.1,
        "stop and hold when a measured joint is further than this from every recent "
        "command (see tracking_lag_s) for tracking_persist_s",
        "rad",
        low=0.005,
        high=3.0,
    )
    tracking_lag_s: float = param(
        0.1,
        "how far behind its command the driver may be: the measured pose is compared with "
        "the commands of this long before its joint_states stamp up to now",
        "s",
        low=0.0,
        high=2.0,
    )
    tracking_persist_s: float = param(
        0.1, "how long the tracking error must persist before the stop", "s", low=0.0, high=5.0
    )
    position_margin: float = param(
        0.02, "kept inside the profile's position limits", "rad", low=0.0, high=0.5
    )
    velocity_scale: float = param(
        1.0, "fraction of the profile's velocity limits used", low=0.01, high=1.0
    )
    acceleration_scale: float = param(
        1.0, "fraction of the profile's acceleration limits used", low=0.01, high=1.0
    )
    jerk_scale: float = param(1.0, "fraction of the profile's jerk limits used", low=0.01, high=1.0)
    blend_window_s: float = param(
        0.2, "cross-fade from the running chunk to a new one", "s", low=0.01, high=2.0
    )
    max_chunk_delay_s: float = param(
        0.5,
        "a chunk ready later than this after its camera frame is dropped",
        "s",
        low=0.01,
        high=10.0,
    )
    trajectory_horizon_s: float = param(
        2.0, "look-ahead of each JointTrajectory", "s", low=0.05, high=30.0
    )
    trajectory_point_period_s: float = param(
        0.05, "spacing of JointTrajectory points", "s", low=0.001, high=1.0
    )
    interpolate_from_desired_state: bool = param(
        False,
        "as the trajectory controller's parameter: false (ros2_control's default) = it starts "
        "each trajectory from the measured state, so every trajectory starts there, within the "
        "velocity/acceleration limits, and an arm further than tracking_tolerance_rad from "
        "its command stops from where it is; true = from the last command (also open-loop "
        "replays, where the measured arm is not ours)",
    )
    gripper_period_s: float = param(
        0.05, "gripper command period while running", "s", low=0.001, high=10.0
    )
    seed: int = param(0, "seed of the rectified-flow noise generator", low=0, high=2**31 - 1)

    def check(self) -> None:
        if self.trajectory_horizon_s < self.trajectory_point_period_s:
            raise ParamError(
                "parameter 'trajectory_horizon_s' = %r: must be >= "
                "trajectory_point_period_s (%r)"
                % (self.trajectory_horizon_s, self.trajectory_point_period_s)
            )

    # --- derived (not parameters) ---------------------------------------------------------------
    @property
    def thresholds(self) -> Dict[str, float]:
        """Watchdog max ages by input name (WATCHED_INPUTS)."""
        return {
            "latent": self.watchdog_latent_s,
            "plan": self.watchdog_plan_s,
            "joint_states": self.watchdog_joint_states_s,
        }

    @property
    def tick_period_s(self) -> float:
        """The controller's tick: the stream period (forward_position) or the supervision
        period (joint_trajectory)."""
        rate = (
            self.command_rate_hz
            if self.command_mode == "forward_position"
            else self.supervision_rate_hz
        )
        return 1.0 / rate


# Schemas by node name, for the config check and the docs.
NODE_SCHEMAS: Dict[str, Type[Schema]] = {
    "encoder_node": EncoderParams,
    "planner_node": PlannerParams,
    "action_node": ActionParams,
}


def check_params_file(
    data: Mapping[str, Any], schemas: Optional[Mapping[str, Type[Schema]]] = None
) -> List[str]:
    """Problems of a ROS params file (``{node: {ros__parameters: {...}}}``) against the schemas;
    [] when every known node's values are valid. Nodes without a schema are not checked."""
    schemas = NODE_SCHEMAS if schemas is None else schemas
    problems = []
    for node, body in (data or {}).items():
        cls = schemas.get(str(node).lstrip("/"))
        if cls is None:
            continue
        values = (body or {}).get("ros__parameters", {}) if isinstance(body, Mapping) else None
        if not isinstance(values, Mapping):
            problems.append("%s: no ros__parameters mapping" % node)
            continue
        try:
            cls.from_mapping(values)
        except ParamError as e:
            problems.append("%s: %s" % (node, e))
    return problems
