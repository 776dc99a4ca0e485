"""clap_ros.launching: the shared graph description (arguments, parameters, conditions), the
`clap-ros launch` command line, and the process runner's supervision with stand-in node processes
(signal handling of real nodes over DDS is in tests/ros/test_launch_runner.py)."""

import ast
import dataclasses
import io
import textwrap
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import yaml

from clap_ros.launching import graph as G
from clap_ros.launching.graph import (
    SIM,
    Arg,
    Argument,
    Condition,
    Graph,
    LaunchError,
    NodeSpec,
    enabled_nodes,
    get_graph,
    node_parameters,
    node_remaps,
    parse_assignments,
    read_params_file,
    resolve_arguments,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config" / "sim_driver.yaml"


def setup_nodes():
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "NODES" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no NODES dict")


# --- arguments ---------------------------------------------------------------------------------


def test_defaults_are_typed_and_params_file_resolves_to_the_package_config():
    v = resolve_arguments(SIM, {})
    assert v["robot"] == "fr3" and v["task"] == "pick_place"
    assert v["seed"] == 0 and type(v["seed"]) is int
    assert v["randomize"] is True and v["expert"] is False
    assert v["camera_rate_hz"] == 15.0 and type(v["camera_rate_hz"]) is float
    assert Path(v["params_file"]).resolve() == CONFIG.resolve()


def test_overrides_are_converted_by_the_declared_type():
    v = resolve_arguments(
        SIM,
        parse_assignments(
            [
                "seed:=7",
                "randomize:=False",
                "real_time_factor:=0",
                "robot:=ur5e",
                "command_mode:=forward_position",
                "expert:=TRUE",
            ]
        ),
    )
    assert v["seed"] == 7 and v["randomize"] is False and v["expert"] is True
    assert v["real_time_factor"] == 0.0 and type(v["real_time_factor"]) is float
    assert v["robot"] == "ur5e" and v["command_mode"] == "forward_position"


@pytest.mark.parametrize(
    "item, name",
    [
        ("seed:=x", "seed"),
        ("seed:=1.5", "seed"),
        ("randomize:=yes", "randomize"),
        ("camera_rate_hz:=fast", "camera_rate_hz"),
        ("command_mode:=teleport", "command_mode"),
    ],
)
def test_bad_values_name_the_argument(item, name):
    with pytest.raises(LaunchError, match=r"argument %s: " % name):
        resolve_arguments(SIM, parse_assignments([item]))


def test_unknown_argument_and_bad_syntax_are_errors():
    with pytest.raises(LaunchError, match="unknown argument robto"):
        resolve_arguments(SIM, {"robto": "fr3"})
    with pytest.raises(LaunchError, match="name:=value"):
        parse_assignments(["robot=fr3"])
    assert parse_assignments(["instruction:=pick a:=b"]) == {"instruction": "pick a:=b"}


def test_get_graph_accepts_launch_file_names():
    assert get_graph("sim") is SIM and get_graph("sim.launch.py") is SIM
    assert get_graph("launch/sim.launch.py") is SIM
    with pytest.raises(LaunchError, match="no launch graph 'nope'"):
        get_graph("nope")


def test_a_graph_using_an_undeclared_argument_is_rejected():
    with pytest.raises(ValueError, match="undeclared arguments \\['seed'\\]"):
        Graph(
            "g",
            "",
            (Argument("robot", "fr3", ""),),
            (NodeSpec("x", "m", "x", parameters={"seed": Arg("seed")}, params_file_arg=None),),
        )
    with pytest.raises(ValueError, match="type"):
        Argument("a", "1", "", type="complex")


# --- parameters and conditions -----------------------------------------------------------------


def test_parameters_are_the_params_file_then_the_arguments(tmp_path):
    pf = tmp_path / "p.yaml"
    pf.write_text(
        yaml.safe_dump(
            {
                "/**": {"ros__parameters": {"status_rate_hz": 1.0, "clock_rate_hz": 10.0}},
                "sim_driver": {
                    "ros__parameters": {"seed": 9, "clock_rate_hz": 50.0, "camera_width": 32}
                },
                "expert_node": {"ros__parameters": {"settle_s": 2.0}},
            }
        )
    )
    v = resolve_arguments(SIM, {"params_file": str(pf), "camera_height": "40"})
    drv = node_parameters(SIM.nodes[0], v)
    assert drv["status_rate_hz"] == 1.0  # wildcard section
    assert drv["clock_rate_hz"] == 50.0  # node section beats the wildcard
    assert drv["seed"] == 0 and drv["camera_width"] == 128  # arguments beat the file
    assert drv["camera_height"] == 40 and drv["use_sim_time"] is False
    assert "settle_s" not in drv
    exp = node_parameters(SIM.nodes[1], v)
    assert exp["settle_s"] == 2.0 and exp["command_mode"] == "joint_trajectory"
    assert "camera_width" not in exp


def test_params_file_errors_are_clear(tmp_path):
    with pytest.raises(LaunchError, match="does not exist"):
        read_params_file(tmp_path / "missing.yaml", "sim_driver")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sim_driver:\n  seed: 3\n")
    with pytest.raises(LaunchError, match="'sim_driver' has no ros__parameters"):
        read_params_file(bad, "sim_driver")
    broken = tmp_path / "broken.yaml"
    broken.write_text("sim_driver: [\n")
    with pytest.raises(LaunchError, match="not valid YAML"):
        read_params_file(broken, "sim_driver")
    (tmp_path / "empty.yaml").write_text("")
    assert read_params_file(tmp_path / "empty.yaml", "sim_driver") == {}


def test_conditions_select_nodes():
    names = lambda v: [n.name for n in enabled_nodes(SIM, v)]  # noqa: E731
    assert names(resolve_arguments(SIM, {})) == ["sim_driver"]
    assert names(resolve_arguments(SIM, {"expert": "true"})) == ["sim_driver", "expert_node"]
    g = Graph(
        "g",
        "",
        (Argument("use_sim", "true", "", "bool"), Argument("cam", "/c", "")),
        (
            NodeSpec("a", "m", "a", condition=Condition("use_sim"), params_file_arg=None),
            NodeSpec(
                "b",
                "m",
                "b",
                condition=Condition("use_sim", unless=True),
                params_file_arg=None,
                remaps=(("/image", Arg("cam")), ("/x", "/y")),
            ),
            NodeSpec("c", "m", "c", condition=Condition("cam"), params_file_arg=None),
        ),
    )
    v = resolve_arguments(g, {"use_sim": "false"})
    assert [n.name for n in g.nodes[:2] if G.node_enabled(n, v)] == ["b"]
    assert node_remaps(g.nodes[1], v) == {"/image": "/c", "/x": "/y"}
    with pytest.raises(LaunchError, match="cam decides whether c starts"):
        G.node_enabled(g.nodes[2], v)


# --- the sim graph agrees with the package -----------------------------------------------------


def test_sim_graph_nodes_are_the_installed_executables():
    nodes = setup_nodes()
    cfg = yaml.safe_load(CONFIG.read_text())
    for spec in SIM.nodes:
        assert nodes[spec.executable] == spec.module, spec.executable
        assert spec.name in cfg, "params file has no section for %s" % spec.name


def test_sim_graph_parameters_are_declared_by_the_nodes():
    from clap_ros.nodes.sim_driver import SimDriverConfig

    fields = {f.name for f in dataclasses.fields(SimDriverConfig)} | {"use_sim_time"}
    driver, expert = SIM.nodes
    assert set(driver.parameters) <= fields, set(driver.parameters) - fields
    from node_source import declares

    for k in expert.parameters:
        assert declares(["expert_node.py"], k), k
    # argument defaults agree with the params file, so both places say the same thing
    v = resolve_arguments(SIM, {})
    section = yaml.safe_load(CONFIG.read_text())["sim_driver"]["ros__parameters"]
    for key, value in driver.parameters.items():
        if key in section:
            assert v[value.name] == section[key], key


# --- command line ------------------------------------------------------------------------------


def _cli(*argv):
    from clap_ros.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["launch", *argv])
    return code, out.getvalue()


def test_cli_help_describes_the_command(capsys):
    from clap_ros.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert "launch" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["launch", "--help"])
    out = capsys.readouterr().out
    assert "name:=value" in out and "--show-args" in out and "exit status" in out
    assert "sim " in out and SIM.description[:40] in out


def test_cli_show_args_lists_every_argument_with_default():
    code, out = _cli("clap_ros", "sim.launch.py", "--show-args")
    assert code == 0
    for a in SIM.arguments:
        assert "'%s'" % a.name in out and a.description in out
    assert "(default: 'pick_place')" in out and "one of: joint_trajectory, forward_position" in out


def test_cli_dry_run_and_errors(capsys):
    code, out = _cli("sim", "expert:=true", "seed:=5", "--dry-run")
    assert code == 0
    assert "expert_node  (python -m clap_ros.nodes.expert_node)" in out and "seed: 5" in out
    assert _cli("sim", "seed:=five")[0] == 2
    assert "argument seed: 'five' is not a valid int" in capsys.readouterr().err
    assert _cli("sim", "other", "seed:=1")[0] == 2
    assert "expected one graph name" in capsys.readouterr().err


# --- runner supervision with stand-in processes -------------------------------------------------


def _fake_graph(tmp_path, monkeypatch, bodies, may_finish=()):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    nodes = []
    for name, body in bodies.items():
        (tmp_path / ("fake_%s.py" % name)).write_text(textwrap.dedent(body))
        nodes.append(
            NodeSpec(
                name,
                "fake_%s" % name,
                name,
                params_file_arg=None,
                parameters={"level": Arg("level")},
                may_finish=name in may_finish,
            )
        )
    return Graph("fake", "", (Argument("level", "3", "", "int"),), tuple(nodes))


SLEEPER = """
    import signal, sys, time
    signal.signal(signal.SIGINT, lambda *a: sys.exit(0))
    print("sleeper up", sys.argv[1:], flush=True)
    while True:
        time.sleep(0.05)
"""


def test_runner_stops_the_graph_when_a_node_dies(tmp_path, monkeypatch):
    from clap_ros.launching.runner import GraphRunner

    g = _fake_graph(
        tmp_path,
        monkeypatch,
        {
            "steady": SLEEPER,
            "crasher": (
                "import time, sys\nprint('crashing soon', flush=True)\n"
                "time.sleep(0.5)\nsys.exit(3)\n"
            ),
        },
    )
    out = io.StringIO()
    r = GraphRunner(
        g,
        resolve_arguments(g, {"level": "4"}),
        log_dir=tmp_path / "logs",
        out=out,
        stop_timeout=3.0,
    )
    assert r.run() == 1
    text = out.getvalue()
    assert "node crasher died (exit code 3); stopping the graph" in text
    assert "[crasher] crashing soon" in text and "[steady] sleeper up" in text
    assert all(not p.running() for p in r.procs)
    steady = next(p for p in r.procs if p.name == "steady")
    assert steady.returncode == 0  # stopped by SIGINT, cleanly
    # the node got exactly the parameters the graph computed, in its own params file
    params = yaml.safe_load((tmp_path / "logs" / "steady.params.yaml").read_text())
    assert params == {"steady": {"ros__parameters": {"level": 4}}}
    assert "--params-file" in steady.cmd and "__node:=steady" in steady.cmd


def test_runner_lets_a_finishing_node_finish(tmp_path, monkeypatch):
    from clap_ros.launching.runner import GraphRunner

    g = _fake_graph(
        tmp_path,
        monkeypatch,
        {"done": "print('done', flush=True)\n", "also_done": "import time\ntime.sleep(0.3)\n"},
        may_finish=("done", "also_done"),
    )
    out = io.StringIO()
    r = GraphRunner(g, resolve_arguments(g, {}), log_dir=tmp_path / "logs", out=out)
    assert r.run() == 0
    assert "done finished (exit code 0)" in out.getvalue()
    assert "every node finished" in out.getvalue()
    # a zero exit from a node not allowed to finish still stops the graph
    g2 = _fake_graph(tmp_path, monkeypatch, {"steady": SLEEPER, "quitter": "pass\n"})
    out = io.StringIO()
    r = GraphRunner(g2, resolve_arguments(g2, {}), log_dir=tmp_path / "logs2", out=out)
    assert r.run() == 1
    assert "node quitter died (exit code 0)" in out.getvalue()
    assert all(not p.running() for p in r.procs)


def test_runner_fails_before_starting_anything_on_a_bad_params_file(tmp_path):
    from clap_ros.launching.runner import GraphRunner

    v = resolve_arguments(SIM, {"params_file": str(tmp_path / "none.yaml")})
    with pytest.raises(LaunchError, match="does not exist"):
        GraphRunner(SIM, v, log_dir=tmp_path / "logs")
    assert not (tmp_path / "logs").exists()


def test_runner_forwards_sigint_and_escalates_for_a_stuck_node(tmp_path, monkeypatch):
    import os
    import signal
    import threading

    from clap_ros.launching.runner import GraphRunner
    from clap_ros.nodes.spawn import wait_for

    g = _fake_graph(
        tmp_path,
        monkeypatch,
        {
            "polite": SLEEPER,
            "stuck": """
            import signal, time
            signal.signal(signal.SIGINT, signal.SIG_IGN)   # stuck in cleanup
            print("stuck up", flush=True)
            while True:
                time.sleep(0.05)
        """,
        },
    )
    out = io.StringIO()
    r = GraphRunner(
        g, resolve_arguments(g, {}), log_dir=tmp_path / "logs", out=out, stop_timeout=0.5
    )

    def interrupt():
        # run() installs its handler before starting nodes, so once both print, Ctrl-C is ours
        if wait_for(lambda: "sleeper up" in out.getvalue() and "stuck up" in out.getvalue(), 20):
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs as a background job
    code = r.run()
    text = out.getvalue()
    assert "SIGINT received: stopping" in text
    assert "stuck did not stop within 0.5 s; escalating" in text
    assert "polite stopped (exit code 0)" in text
    assert "stuck stopped (exit code -15, killed by SIGTERM)" in text
    assert code == 1 and all(not p.running() for p in r.procs)
    assert signal.getsignal(signal.SIGINT) is before  # restored
