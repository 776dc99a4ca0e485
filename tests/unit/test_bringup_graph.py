"""The `bringup` graph (clap_ros.launching.graph.BRINGUP), launch/bringup.launch.py and
config/clap_nodes.yaml: arguments, nodes, the use_sim condition, params-file merge, remaps, and
agreement with the parameters the nodes really declare."""

import ast
import importlib.util
import io
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml

from clap_ros.launching.graph import (
    BRINGUP,
    GRAPHS,
    LaunchError,
    PackageFile,
    enabled_nodes,
    get_graph,
    node_parameters,
    node_remaps,
    parse_assignments,
    resolve_arguments,
)

ROOT = Path(__file__).resolve().parents[1].parent
CONFIG = ROOT / "config" / "clap_nodes.yaml"
SIM_CONFIG = ROOT / "config" / "sim_driver.yaml"
LAUNCH = ROOT / "launch" / "bringup.launch.py"
CLAP_NODES = ("encoder_node", "planner_node", "action_node")
# Where each node declares its parameters (the shared model/backend/threads in runtime_params).
NODE_SOURCES = {
    "encoder_node": ["encoder_node.py", "runtime_params.py"],
    "planner_node": ["planner_node.py", "runtime_params.py"],
    "action_node": ["action_node.py", "runtime_params.py"],
    "sim_driver": ["sim_driver.py"],
}


def _values(*items):
    return resolve_arguments(BRINGUP, parse_assignments(list(items)))


def _by_name(values):
    return {n.name: n for n in enabled_nodes(BRINGUP, values)}


def _setup_nodes():
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "NODES" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no NODES dict")


def _declared_in(node_name, key):
    from node_source import declares

    return declares(NODE_SOURCES[node_name], key)


def test_bringup_is_registered_with_the_documented_arguments():
    assert get_graph("bringup") is BRINGUP and get_graph("bringup.launch.py") is BRINGUP
    assert GRAPHS["sim"].name == "sim"  # the sim graph is still there
    names = [a.name for a in BRINGUP.arguments]
    for name in (
        "robot",
        "model",
        "instruction",
        "backend",
        "command_mode",
        "use_sim",
        "task",
        "seed",
        "params_file",
        "image_topic",
        "camera_info_topic",
        "use_sim_time",
    ):
        assert name in names, name
    assert BRINGUP.argument("params_file").default == PackageFile("config", "clap_nodes.yaml")
    assert BRINGUP.argument("sim_params_file").default == PackageFile("config", "sim_driver.yaml")
    assert set(BRINGUP.argument("backend").choices) == {"auto", "cpu", "cuda", "tensorrt"}


def test_defaults_are_typed_and_resolve_to_the_package_configs():
    v = _values()
    assert v["use_sim"] is False and v["use_sim_time"] is False and v["enable_on_start"] is False
    assert v["seed"] == 0 and type(v["seed"]) is int
    assert v["real_time_factor"] == 1.0 and type(v["real_time_factor"]) is float
    assert Path(v["params_file"]).resolve() == CONFIG.resolve()
    assert Path(v["sim_params_file"]).resolve() == SIM_CONFIG.resolve()
    # model "" = the robot's default bundle (robots/<robot>.yaml default_model)
    assert v["instruction"] == "" and v["model"] == ""


@pytest.mark.parametrize(
    "item, name",
    [
        ("use_sim:=maybe", "use_sim"),
        ("backend:=tpu", "backend"),
        ("seed:=one", "seed"),
        ("command_mode:=teleport", "command_mode"),
        ("enable_on_start:=1", "enable_on_start"),
    ],
)
def test_bad_arguments_are_named(item, name):
    with pytest.raises(LaunchError, match="argument %s: " % name):
        _values(item)


def test_use_sim_decides_whether_the_sim_driver_starts():
    assert list(_by_name(_values())) == list(CLAP_NODES)
    assert list(_by_name(_values("use_sim:=true"))) == ["sim_driver"] + list(CLAP_NODES)
    assert list(_by_name(_values("use_sim:=False"))) == list(CLAP_NODES)


def test_parameters_come_from_the_config_then_the_arguments():
    cfg = yaml.safe_load(CONFIG.read_text())
    v = _values(
        "use_sim:=true",
        "robot:=ur5e",
        "backend:=cpu",
        "model:=/tmp/bundle",
        "instruction:=push the cube",
        "command_mode:=forward_position",
        "seed:=4",
        "task:=push",
        "use_sim_time:=true",
        "real_time_factor:=0.5",
    )
    nodes = _by_name(v)
    enc = node_parameters(nodes["encoder_node"], v)
    plan = node_parameters(nodes["planner_node"], v)
    act = node_parameters(nodes["action_node"], v)
    drv = node_parameters(nodes["sim_driver"], v)
    for p in (enc, plan, act):
        assert p["backend"] == "cpu" and p["model"] == "/tmp/bundle" and p["use_sim_time"] is True
    # keys no argument touches keep the config's value
    assert enc["threads"] == cfg["encoder_node"]["ros__parameters"]["threads"]
    assert plan["planner_rate_hz"] == cfg["planner_node"]["ros__parameters"]["planner_rate_hz"]
    assert plan["robot"] == act["robot"] == drv["robot"] == "ur5e"
    assert plan["instruction"] == "push the cube"
    assert act["command_mode"] == "forward_position" and act["enable_on_start"] is False
    assert drv["task"] == "push" and drv["seed"] == 4 and drv["real_time_factor"] == 0.5
    # the sim driver reads its own file, not the CLAP nodes' one
    assert (
        drv["camera_rate_hz"]
        == yaml.safe_load(SIM_CONFIG.read_text())["sim_driver"]["ros__parameters"]["camera_rate_hz"]
    )
    assert "planner_rate_hz" not in drv


def test_a_user_params_file_overrides_the_config_but_not_the_arguments(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "/**": {"ros__parameters": {"threads": 2}},
                "planner_node": {"ros__parameters": {"planner_rate_hz": 2.0, "backend": "cuda"}},
            }
        )
    )
    v = _values("params_file:=%s" % f, "backend:=cpu")
    nodes = _by_name(v)
    plan = node_parameters(nodes["planner_node"], v)
    enc = node_parameters(nodes["encoder_node"], v)
    assert plan["planner_rate_hz"] == 2.0 and plan["threads"] == 2 and enc["threads"] == 2
    assert plan["backend"] == "cpu"  # the argument wins over the file
    assert "max_rate_hz" not in enc  # a user file replaces the package's config


def test_camera_topics_reach_the_encoder_and_rename_the_sim_camera():
    v = _values("use_sim:=true", "image_topic:=/cam/rgb", "camera_info_topic:=/cam/info")
    nodes = _by_name(v)
    enc = node_parameters(nodes["encoder_node"], v)
    assert enc["image_topic"] == "/cam/rgb" and enc["camera_info_topic"] == "/cam/info"
    assert node_remaps(nodes["sim_driver"], v) == {
        "/camera/image_raw": "/cam/rgb",
        "/camera/camera_info": "/cam/info",
    }
    assert node_remaps(nodes["encoder_node"], v) == {}


def test_argument_defaults_agree_with_the_config():
    v = _values("use_sim:=true")
    cfg = yaml.safe_load(CONFIG.read_text())
    for spec in BRINGUP.nodes:
        if spec.name not in cfg:
            continue
        section = cfg[spec.name]["ros__parameters"]
        for key, value in spec.parameters.items():
            if key in section:
                assert v[value.name] == section[key], (spec.name, key)


def test_every_node_is_an_installed_executable_with_a_config_section():
    nodes = _setup_nodes()
    cfg = yaml.safe_load(CONFIG.read_text())
    for spec in BRINGUP.nodes:
        assert nodes.get(spec.executable) == spec.module, spec.executable
        assert (ROOT / (spec.module.replace(".", "/") + ".py")).is_file(), spec.module
        if spec.name in CLAP_NODES:
            assert spec.name in cfg, "config/clap_nodes.yaml has no section for %s" % spec.name


def test_every_parameter_is_declared_by_its_node():
    cfg = yaml.safe_load(CONFIG.read_text())
    for spec in BRINGUP.nodes:
        keys = set(spec.parameters) | set(cfg.get(spec.name, {}).get("ros__parameters", {}))
        missing = sorted(k for k in keys if not _declared_in(spec.name, k))
        assert not missing, "%s declares no parameter %s" % (spec.name, missing)


def test_cli_dry_run_lists_the_bringup_nodes(capsys):
    from clap_ros.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        assert (
            main(
                [
                    "launch",
                    "--dry-run",
                    "bringup",
                    "use_sim:=true",
                    "instruction:=reach the red target",
                ]
            )
            == 0
        )
    text = out.getvalue()
    for name in ("sim_driver", "encoder_node", "planner_node", "action_node"):
        assert "%s  (python -m clap_ros.nodes.%s)" % (name, name) in text
    assert "instruction: 'reach the red target'" in text
    with redirect_stdout(io.StringIO()):
        assert main(["launch", "--dry-run", "bringup", "use_sim:=perhaps"]) == 2
    assert "argument use_sim" in capsys.readouterr().err


def _load_stand_ins():
    spec = importlib.util.spec_from_file_location(
        "_sim_launch_tests", Path(__file__).with_name("test_sim_launch.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_translation_builds_the_bringup_graph(monkeypatch):
    import types

    helpers = _load_stand_ins()
    classes = {}
    for module, names in helpers.STANDARD_API.items():
        mod = types.ModuleType(module)
        for name in names:
            cls = type(name, (helpers._Recorded,), {})
            setattr(mod, name, cls)
            classes[name] = cls
        monkeypatch.setitem(sys.modules, module, mod)
    L = types.SimpleNamespace(**classes)
    from clap_ros.launching.ros_launch import launch_description

    ld = launch_description("bringup")
    entities = ld.args[0]
    decls = [e.args[0] for e in entities if isinstance(e, L.DeclareLaunchArgument)]
    nodes = [e.kwargs for e in entities if isinstance(e, L.Node)]
    assert decls == [a.name for a in BRINGUP.arguments]
    assert [n["name"] for n in nodes] == ["sim_driver"] + list(CLAP_NODES)
    assert nodes[0]["condition"] == L.IfCondition(L.LaunchConfiguration("use_sim"))
    assert nodes[0]["parameters"][0] == L.LaunchConfiguration("sim_params_file")
    assert nodes[0]["remappings"] == [
        ("/camera/image_raw", L.LaunchConfiguration("image_topic")),
        ("/camera/camera_info", L.LaunchConfiguration("camera_info_topic")),
    ]
    for n in nodes[1:]:
        assert n["condition"] is None and n["parameters"][0] == L.LaunchConfiguration("params_file")
        assert n["parameters"][1]["model"] == L.ParameterValue(
            L.LaunchConfiguration("model"), value_type=str
        )
    assert nodes[3]["parameters"][1]["enable_on_start"] == L.ParameterValue(
        L.LaunchConfiguration("enable_on_start"), value_type=bool
    )


def test_launch_file_is_the_shared_graph():
    tree = ast.parse(LAUNCH.read_text())
    graph = [
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "GRAPH" for t in n.targets)
    ]
    assert graph == ["bringup"]


def test_launch_file_imports_and_builds_with_launch_ros():
    pytest.importorskip("launch_ros")
    from launch_ros.actions import Node

    from launch import LaunchDescription

    spec = importlib.util.spec_from_file_location("bringup_launch", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    assert isinstance(ld, LaunchDescription)
    assert len([e for e in ld.entities if isinstance(e, Node)]) == len(BRINGUP.nodes) == 4
