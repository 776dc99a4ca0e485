"""The node graphs clap_ros brings up, described once for both launchers.

`launch/*.launch.py` turn a graph into standard launch / launch_ros actions for `ros2 launch`
(clap_ros.launching.ros_launch); `clap-ros launch` (clap_ros.launching.runner) starts the same graph
as separate processes on machines without the ros2 CLI. Both read only what is declared here, so
the two can not disagree on a node, a parameter or a default.

Plain Python, no launch / rclpy imports: the runner and the unit tests use it anywhere.

Argument values are strings, as on the `ros2 launch` command line (`name:=value`); an argument's
``type`` says how a parameter built from it is typed (ParameterValue(value_type=...) in launch,
the same conversion here). Booleans are ``true`` / ``false`` in any letter case, the spelling both
launch_ros and this module accept.
"""

from __future__ import annotations

import copy
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

PACKAGE = "clap_ros"
ARG_TYPES = ("str", "int", "float", "bool", "path")


class LaunchError(ValueError):
    """A bad launch argument, params file or graph name; the message names the culprit."""


@dataclass(frozen=True)
class PackageFile:
    """A file in the package's share directory (``FindPackageShare`` + path in launch)."""

    parts: Tuple[str, ...]

    def __init__(self, *parts: str):
        object.__setattr__(self, "parts", tuple(parts))


@dataclass(frozen=True)
class Argument:
    """A declared launch argument (``DeclareLaunchArgument``)."""

    name: str
    default: Union[str, PackageFile]
    description: str
    type: str = "str"
    choices: Optional[Tuple[str, ...]] = None

    def __post_init__(self):
        if self.type not in ARG_TYPES:
            raise ValueError(
                "argument %s: type %r is not one of %s" % (self.name, self.type, ARG_TYPES)
            )
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))


@dataclass(frozen=True)
class Arg:
    """The value of launch argument ``name`` (``LaunchConfiguration`` in launch), typed as the
    argument declares when it becomes a parameter."""

    name: str


@dataclass(frozen=True)
class Condition:
    """Start the node only if bool argument ``arg`` is true (``IfCondition``), or false with
    ``unless`` (``UnlessCondition``)."""

    arg: str
    unless: bool = False


ParamValue = Union[Arg, bool, int, float, str]


@dataclass(frozen=True)
class NodeSpec:
    """One node of a graph (``launch_ros.actions.Node``)."""

    executable: str  # `ros2 run clap_ros <executable>` (setup.py NODES)
    module: str  # what that executable runs: `python -m <module>`
    name: str  # node name; also its section in the params file
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)
    params_file_arg: Optional[str] = "params_file"  # argument naming the ros__parameters YAML
    remaps: Tuple[Tuple[str, Union[str, Arg]], ...] = ()
    condition: Optional[Condition] = None
    # A node that exits 0 by design (the expert when its plan is done) may finish without
    # taking the graph down; any other exit of any node stops the graph.
    may_finish: bool = False
    package: str = PACKAGE


@dataclass(frozen=True)
class Graph:
    name: str
    description: str
    arguments: Tuple[Argument, ...]
    nodes: Tuple[NodeSpec, ...]

    def __post_init__(self):
        names = [a.name for a in self.arguments]
        if len(set(names)) != len(names):
            raise ValueError("graph %s declares an argument twice" % self.name)
        declared = set(names)
        for node in self.nodes:
            used = [v.name for v in node.parameters.values() if isinstance(v, Arg)]
            used += [d.name for _, d in node.remaps if isinstance(d, Arg)]
            if node.condition:
                used.append(node.condition.arg)
            if node.params_file_arg:
                used.append(node.params_file_arg)
            missing = sorted(set(used) - declared)
            if missing:
                raise ValueError(
                    "graph %s node %s uses undeclared arguments %s"
                    % (self.name, node.name, missing)
                )

    def argument(self, name: str) -> Argument:
        for a in self.arguments:
            if a.name == name:
                return a
        raise LaunchError("graph %s has no argument %r" % (self.name, name))


# ---------------------------------------------------------------------------------------------
# Argument values


def package_share() -> Path:
    """The package's share directory: the source checkout this module runs from (the files the
    developer edits), else ``<prefix>/share/clap_ros`` of the prefix it is installed in (pip,
    venv or colcon), else the ament index, else the running interpreter's prefix."""
    here = Path(__file__).resolve()
    root = here.parents[2]
    if (root / "package.xml").is_file() and (root / "config").is_dir():
        return root
    for prefix in here.parents[3:]:
        if (prefix / "share" / PACKAGE / "package.xml").is_file():
            return prefix / "share" / PACKAGE
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # not indexed (no AMENT_PREFIX_PATH): fall back to the running prefix
        pass
    return Path(sys.prefix) / "share" / PACKAGE


def default_value(arg: Argument) -> str:
    if isinstance(arg.default, PackageFile):
        return str(package_share().joinpath(*arg.default.parts))
    return str(arg.default)


def convert(arg: Argument, text: str) -> Any:
    """The typed value of argument ``arg`` given as ``text``; LaunchError names the argument."""
    try:
        if arg.type == "int":
            return int(text)
        if arg.type == "float":
            return float(text)
        if arg.type == "bool":
            low = text.strip().lower()
            if low not in ("true", "false"):
                raise ValueError("expected true or false")
            return low == "true"
    except ValueError as e:
        raise LaunchError("argument %s: %r is not a valid %s (%s)" % (arg.name, text, arg.type, e))
    if arg.choices is not None and text not in arg.choices:
        raise LaunchError(
            "argument %s: %r is not one of %s" % (arg.name, text, ", ".join(arg.choices))
        )
    return text


def parse_assignments(items: Sequence[str]) -> Dict[str, str]:
    """``["robot:=fr3", ...]`` -> ``{"robot": "fr3"}`` (the ros2 launch command-line syntax)."""
    out: Dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise LaunchError("%r is not a launch argument; write name:=value" % item)
        out[name] = value
    return out


def resolve_arguments(graph: Graph, overrides: Mapping[str, str]) -> Dict[str, Any]:
    """Typed values of every declared argument: the override if given, else the default.
    Every value is checked, so a bad default or override fails before any node starts."""
    unknown = sorted(set(overrides) - {a.name for a in graph.arguments})
    if unknown:
        raise LaunchError(
            "unknown argument%s %s for graph %s (known: %s)"
            % (
                "s" if len(unknown) > 1 else "",
                ", ".join(unknown),
                graph.name,
                ", ".join(a.name for a in graph.arguments),
            )
        )
    values = {}
    for a in graph.arguments:
        text = overrides[a.name] if a.name in overrides else default_value(a)
        values[a.name] = convert(a, text)
    return values


# ---------------------------------------------------------------------------------------------
# Nodes: conditions and parameters


def node_enabled(node: NodeSpec, values: Mapping[str, Any]) -> bool:
    if node.condition is None:
        return True
    v = values[node.condition.arg]
    if not isinstance(v, bool):
        raise LaunchError(
            "argument %s decides whether %s starts, so it must be a bool"
            % (node.condition.arg, node.name)
        )
    return (not v) if node.condition.unless else v


def enabled_nodes(graph: Graph, values: Mapping[str, Any]) -> List[NodeSpec]:
    return [n for n in graph.nodes if node_enabled(n, values)]


def _merge(base: Dict[str, Any], top: Mapping[str, Any]) -> Dict[str, Any]:
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def read_params_file(path: Union[str, Path], node_name: str, namespace: str = "") -> Dict[str, Any]:
    """The parameters a ros__parameters YAML gives node ``node_name``: the ``/**`` wildcard
    section first, then the node's own (``name``, ``/name`` or ``/namespace/name``)."""
    path = Path(path)
    if not path.is_file():
        raise LaunchError("params file %s does not exist" % path)
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise LaunchError("params file %s is not valid YAML: %s" % (path, e))
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise LaunchError("params file %s: expected a mapping of node names" % path)
    full = "/".join(p for p in (namespace.strip("/"), node_name) if p)
    keys = ("/**", "**", node_name, "/" + node_name, "/" + full)
    out: Dict[str, Any] = {}
    for key in dict.fromkeys(keys):
        section = doc.get(key)
        if section is None:
            continue
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters"), dict):
            raise LaunchError(
                "params file %s: section %r has no ros__parameters mapping" % (path, key)
            )
        _merge(out, section["ros__parameters"])
    return out


def node_parameters(node: NodeSpec, values: Mapping[str, Any]) -> Dict[str, Any]:
    """The parameters ``node`` starts with: the params file's, then those built from arguments
    (later wins, as in launch_ros ``parameters=[params_file, {...}]``)."""
    params: Dict[str, Any] = {}
    if node.params_file_arg:
        params = read_params_file(values[node.params_file_arg], node.name)
    for key, v in node.parameters.items():
        params[key] = values[v.name] if isinstance(v, Arg) else v
    return params


def node_remaps(node: NodeSpec, values: Mapping[str, Any]) -> Dict[str, str]:
    return {src: str(values[d.name]) if isinstance(d, Arg) else d for src, d in node.remaps}


# ---------------------------------------------------------------------------------------------
# The graphs

_SIM_SHARED = {
    "robot": Arg("robot"),
    "task": Arg("task"),
    "seed": Arg("seed"),
    "randomize": Arg("randomize"),
    "use_sim_time": Arg("use_sim_time"),
}

SIM = Graph(
    name="sim",
    description="The simulated arm: the MuJoCo sim_driver (ros2_control-like topics, camera) and, "
    "with expert:=true, the scripted expert for the seed's layout.",
    arguments=(
        Argument("robot", "fr3", "robot profile: fr3, panda, ur5e or a profile YAML path"),
        Argument("task", "pick_place", "sim task"),
        Argument(
            "seed",
            "0",
            "layout/appearance seed (the driver's ~/reset uses the current value)",
            "int",
        ),
        Argument("randomize", "true", "visual randomisation per seed", "bool"),
        Argument(
            "use_sim_time",
            "false",
            "publish and follow /clock (needed for real_time_factor 0)",
            "bool",
        ),
        Argument(
            "real_time_factor",
            "1.0",
            "sim seconds per wall second; 0 = as fast as possible",
            "float",
        ),
        Argument("camera_width", "128", "scene camera width, px", "int"),
        Argument("camera_height", "128", "scene camera height, px", "int"),
        Argument("camera_rate_hz", "15.0", "scene camera rate, Hz", "float"),
        Argument("wrist_camera", "false", "also publish the wrist camera", "bool"),
        Argument("expert", "false", "also run the scripted expert for this seed", "bool"),
        Argument(
            "command_mode",
            "joint_trajectory",
            "expert commands",
            "str",
            choices=("joint_trajectory", "forward_position"),
        ),
        Argument(
            "params_file",
            PackageFile("config", "sim_driver.yaml"),
            "ros__parameters YAML for sim_driver and expert_node",
            "path",
        ),
    ),
    nodes=(
        NodeSpec(
            "sim_driver",
            "clap_ros.nodes.sim_driver",
            "sim_driver",
            parameters=dict(
                _SIM_SHARED,
                real_time_factor=Arg("real_time_factor"),
                camera_width=Arg("camera_width"),
                camera_height=Arg("camera_height"),
                camera_rate_hz=Arg("camera_rate_hz"),
                wrist_camera=Arg("wrist_camera"),
            ),
        ),
        NodeSpec(
            "expert_node",
            "clap_ros.nodes.expert_node",
            "expert_node",
            parameters=dict(_SIM_SHARED, command_mode=Arg("command_mode")),
            condition=Condition("expert"),
            may_finish=True,
        ),
    ),
)

_CLAP_SHARED = {
    "model": Arg("model"),
    "backend": Arg("backend"),
    "use_sim_time": Arg("use_sim_time"),
}

BRINGUP = Graph(
    name="bringup",
    description="The CLAP runtime: encoder_node, planner_node and action_node against a real arm "
    "driver or, with use_sim:=true, the MuJoCo sim_driver.",
    arguments=(
        Argument("robot", "fr3", "robot profile: fr3, panda, ur5e or a profile YAML path"),
        Argument(
            "model",
            "",
            "model bundle directory; '' = the robot's default bundle (default_model in its "
            "profile: models/default for fr3/panda, models/ur5e for ur5e). A relative path "
            "is looked up in the working directory, then the ament index share/clap_ros, "
            "then the source checkout",
            "path",
        ),
        Argument(
            "instruction",
            "",
            "task instruction for the planner; empty: wait for one on /clap/instruction",
        ),
        Argument(
            "backend",
            "auto",
            "inference backend",
            "str",
            choices=("auto", "cpu", "cuda", "tensorrt"),
        ),
        Argument(
            "command_mode",
            "joint_trajectory",
            "how action_node commands the driver: trajectories with velocities, or a "
            "position stream at the action node's command_rate_hz",
            "str",
            choices=("joint_trajectory", "forward_position"),
        ),
        Argument(
            "enable_on_start",
            "false",
            "action_node starts enabled (otherwise call its ~/enable service)",
            "bool",
        ),
        Argument(
            "use_sim",
            "false",
            "also start the MuJoCo sim_driver in place of a real arm driver",
            "bool",
        ),
        Argument("task", "pick_place", "sim task (use_sim:=true only)"),
        Argument("seed", "0", "sim layout/appearance seed (use_sim:=true only)", "int"),
        Argument(
            "randomize", "true", "sim visual randomisation per seed (use_sim:=true only)", "bool"
        ),
        Argument(
            "reflexes",
            "false",
            "sim_driver emulates the robot profile's reflexes (use_sim:=true only)",
            "bool",
        ),
        Argument(
            "real_time_factor",
            "1.0",
            "sim seconds per wall second (use_sim:=true only; other than 1 needs "
            "use_sim_time:=true)",
            "float",
        ),
        Argument("use_sim_time", "false", "every node follows /clock", "bool"),
        Argument(
            "image_topic",
            "/camera/image_raw",
            "camera image the encoder reads (the sim camera is remapped to it)",
        ),
        Argument(
            "camera_info_topic",
            "/camera/camera_info",
            "CameraInfo of that camera (the sim camera's is remapped to it)",
        ),
        Argument(
            "params_file",
            PackageFile("config", "clap_nodes.yaml"),
            "ros__parameters YAML for encoder_node, planner_node and action_node",
            "path",
        ),
        Argument(
            "sim_params_file",
            PackageFile("config", "sim_driver.yaml"),
            "ros__parameters YAML for sim_driver (use_sim:=true only)",
            "path",
        ),
    ),
    nodes=(
        NodeSpec(
            "sim_driver",
            "clap_ros.nodes.sim_driver",
            "sim_driver",
            parameters=dict(
                _SIM_SHARED,
                real_time_factor=Arg("real_time_factor"),
                reflexes=Arg("reflexes"),
            ),
            params_file_arg="sim_params_file",
            remaps=(
                ("/camera/image_raw", Arg("image_topic")),
                ("/camera/camera_info", Arg("camera_info_topic")),
            ),
            condition=Condition("use_sim"),
        ),
        NodeSpec(
            "encoder_node",
            "clap_ros.nodes.encoder_node",
            "encoder_node",
            parameters=dict(
                _CLAP_SHARED,
                robot=Arg("robot"),
                image_topic=Arg("image_topic"),
                camera_info_topic=Arg("camera_info_topic"),
            ),
        ),
        NodeSpec(
            "planner_node",
            "clap_ros.nodes.planner_node",
            "planner_node",
            parameters=dict(_CLAP_SHARED, robot=Arg("robot"), instruction=Arg("instruction")),
        ),
        NodeSpec(
            "action_node",
            "clap_ros.nodes.action_node",
            "action_node",
            parameters=dict(
                _CLAP_SHARED,
                robot=Arg("robot"),
                command_mode=Arg("command_mode"),
                enable_on_start=Arg("enable_on_start"),
            ),
        ),
    ),
)

# Registry: `clap-ros launch <name>` and `launch/<name>.launch.py`.
GRAPHS: Dict[str, Graph] = {g.name: g for g in (SIM, BRINGUP)}


def get_graph(name: str) -> Graph:
    """A graph by name; ``sim.launch.py`` is accepted for ``sim``."""
    key = os.path.basename(name)
    for suffix in (".launch.py", ".py"):
        if key.endswith(suffix):
            key = key[: -len(suffix)]
    if key not in GRAPHS:
        raise LaunchError("no launch graph %r (available: %s)" % (name, ", ".join(sorted(GRAPHS))))
    return GRAPHS[key]
