"""launch/*.launch.py build their graphs from clap_ros.launching.graph, and config/sim_driver.yaml
agrees with the nodes' parameters.

launch/launch_ros are not installed in the venv: the launch files are checked by parsing them, the
translation (clap_ros.launching.ros_launch) by running it against small recording stand-ins for
the launch API classes it calls; the real import test runs wherever launch_ros exists (a Jazzy
workspace) and is skipped only without it.
"""

import ast
import dataclasses
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from clap_ros.launching.graph import GRAPHS, SIM, PackageFile

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_DIR = ROOT / "launch"
LAUNCH = LAUNCH_DIR / "sim.launch.py"
CONFIG = ROOT / "config" / "sim_driver.yaml"
TRANSLATION = ROOT / "clap_ros" / "launching" / "ros_launch.py"

# The launch / launch_ros names the translation may use: stable API present in Jazzy.
STANDARD_API = {
    "launch": {"LaunchDescription"},
    "launch.actions": {"DeclareLaunchArgument", "Shutdown"},
    "launch.conditions": {"IfCondition", "UnlessCondition"},
    "launch.substitutions": {"LaunchConfiguration", "PathJoinSubstitution"},
    "launch_ros.actions": {"Node"},
    "launch_ros.parameter_descriptions": {"ParameterValue"},
    "launch_ros.substitutions": {"FindPackageShare"},
}


def test_every_launch_file_is_a_shared_graph():
    files = sorted(LAUNCH_DIR.glob("*.launch.py"))
    assert LAUNCH in files
    for path in files:
        tree = ast.parse(path.read_text())
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert any(
            n.module == "clap_ros.launching.ros_launch"
            and "launch_description" in [a.name for a in n.names]
            for n in imports
        ), path
        graph = [
            ast.literal_eval(n.value)
            for n in tree.body
            if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "GRAPH" for t in n.targets)
        ]
        assert graph and graph[0] == path.name[: -len(".launch.py")] and graph[0] in GRAPHS
        funcs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert "generate_launch_description" in funcs
        # one source of truth: no node or argument declared in the file itself
        calls = {getattr(n.func, "id", "") for n in ast.walk(tree) if isinstance(n, ast.Call)}
        assert not calls & {"Node", "DeclareLaunchArgument"}, path


def test_translation_uses_only_the_standard_launch_api():
    tree = ast.parse(TRANSLATION.read_text())
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module.split(".")[0] in ("launch", "launch_ros"):
            names = {a.name for a in n.names}
            assert names <= STANDARD_API.get(n.module, set()), (n.module, names)


class _Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __eq__(self, other):
        return type(self) is type(other) and (self.args, self.kwargs) == (other.args, other.kwargs)

    def __repr__(self):
        return "%s%r%r" % (type(self).__name__, self.args, self.kwargs)


@pytest.fixture
def launch_stand_ins(monkeypatch):
    """Minimal recording versions of the launch API classes, installed as the launch modules."""
    classes = {}
    for module, names in STANDARD_API.items():
        mod = types.ModuleType(module)
        for name in names:
            cls = type(name, (_Recorded,), {})
            setattr(mod, name, cls)
            classes[name] = cls
        monkeypatch.setitem(sys.modules, module, mod)
    return types.SimpleNamespace(**classes)


def test_translation_builds_the_sim_graph(launch_stand_ins):
    from clap_ros.launching.ros_launch import launch_description

    L = launch_stand_ins
    ld = launch_description("sim")
    entities = ld.args[0]
    decls = [e for e in entities if isinstance(e, L.DeclareLaunchArgument)]
    nodes = [e for e in entities if isinstance(e, L.Node)]
    assert [d.args[0] for d in decls] == [a.name for a in SIM.arguments]
    by_name = {d.args[0]: d.kwargs for d in decls}
    assert by_name["robot"] == {
        "default_value": "fr3",
        "description": SIM.argument("robot").description,
    }
    assert by_name["command_mode"]["choices"] == ["joint_trajectory", "forward_position"]
    assert by_name["params_file"]["default_value"] == L.PathJoinSubstitution(
        [L.FindPackageShare("clap_ros"), "config", "sim_driver.yaml"]
    )
    assert [n.kwargs["name"] for n in nodes] == ["sim_driver", "expert_node"]
    driver, expert = (n.kwargs for n in nodes)
    assert driver["package"] == "clap_ros" and driver["executable"] == "sim_driver"
    assert driver["condition"] is None
    assert expert["condition"] == L.IfCondition(L.LaunchConfiguration("expert"))
    params_file, overrides = driver["parameters"]
    assert params_file == L.LaunchConfiguration("params_file")
    assert overrides["seed"] == L.ParameterValue(L.LaunchConfiguration("seed"), value_type=int)
    assert overrides["randomize"] == L.ParameterValue(
        L.LaunchConfiguration("randomize"), value_type=bool
    )
    assert overrides["camera_rate_hz"] == L.ParameterValue(
        L.LaunchConfiguration("camera_rate_hz"), value_type=float
    )
    assert set(overrides) == set(SIM.nodes[0].parameters)
    assert expert["parameters"][1]["command_mode"] == L.ParameterValue(
        L.LaunchConfiguration("command_mode"), value_type=str
    )


def test_launch_arguments_cover_the_documented_ones():
    names = [a.name for a in SIM.arguments]
    for name in (
        "robot",
        "task",
        "seed",
        "use_sim_time",
        "camera_width",
        "camera_height",
        "camera_rate_hz",
        "expert",
        "params_file",
    ):
        assert name in names
    assert SIM.argument("params_file").default == PackageFile("config", "sim_driver.yaml")
    cfg = yaml.safe_load(CONFIG.read_text())["sim_driver"]["ros__parameters"]
    assert SIM.argument("robot").default == cfg["robot"]
    assert int(SIM.argument("camera_width").default) == cfg["camera_width"] == 128
    assert float(SIM.argument("camera_rate_hz").default) == cfg["camera_rate_hz"] == 15.0


def test_params_file_keys_are_sim_driver_parameters():
    from clap_ros.nodes.sim_driver import SimDriverConfig

    fields = {f.name for f in dataclasses.fields(SimDriverConfig)}
    cfg = yaml.safe_load(CONFIG.read_text())
    keys = set(cfg["sim_driver"]["ros__parameters"])
    assert keys <= fields, "unknown sim_driver parameters in config: %s" % (keys - fields)
    defaults = SimDriverConfig()
    for k in keys:
        assert cfg["sim_driver"]["ros__parameters"][k] == getattr(defaults, k), k
    from node_source import declares

    for k in cfg["expert_node"]["ros__parameters"]:
        assert declares(["expert_node.py"], k), "expert_node declares no parameter %s" % k


def test_launch_file_imports_and_builds_with_launch_ros():
    pytest.importorskip("launch_ros")
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    from launch import LaunchDescription

    spec = importlib.util.spec_from_file_location("sim_launch", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    assert isinstance(ld, LaunchDescription)
    nodes = [e for e in ld.entities if isinstance(e, Node)]
    assert len(nodes) == len(SIM.nodes) == 2
    decls = [e for e in ld.entities if isinstance(e, DeclareLaunchArgument)]
    assert [d.name for d in decls] == [a.name for a in SIM.arguments]
