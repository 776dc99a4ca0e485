"""clap_ros.nodes.spawn: command lines ROS parses back to the same types, and clean stopping."""

import sys
import textwrap
import time

import pytest

from clap_ros.nodes.spawn import NodeProcess, format_param, node_command, wait_for


def test_format_param_keeps_types_when_parsed_as_yaml():
    import yaml

    for value in (True, False, 3, 0.5, 1e-3, "fr3", "1.0", "true", "", [1.0, 2.0], ["a", "b"]):
        assert yaml.safe_load(format_param(value)) == value
        assert type(yaml.safe_load(format_param(value))) is type(value)
    with pytest.raises(TypeError):
        format_param({"a": 1})


def test_node_command_layout(tmp_path):
    cmd = node_command(
        "clap_ros.nodes.sim_driver",
        {"seed": 3, "robot": "ur5e"},
        params_file=tmp_path / "p.yaml",
        name="drv",
        remaps={"/a": "/b"},
    )
    assert cmd[:4] == [sys.executable, "-m", "clap_ros.nodes.sim_driver", "--ros-args"]
    assert cmd[4:8] == ["-r", "__node:=drv", "-r", "/a:=/b"]
    assert cmd[8:10] == ["--params-file", str(tmp_path / "p.yaml")]
    assert cmd[10:] == ["-p", "seed:=3", "-p", 'robot:="ur5e"']


def _script(tmp_path, body):
    # A stand-in module that plays a node's part in signal handling (no ROS needed for that).
    mod = tmp_path / "fake_node_mod.py"
    mod.write_text(textwrap.dedent(body))
    return mod


def test_stop_escalates_from_sigint_to_sigterm(tmp_path, monkeypatch):
    _script(
        tmp_path,
        """
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # a node stuck in cleanup ignores SIGINT
        print("up", flush=True)
        while True:
            time.sleep(0.05)
    """,
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    p = NodeProcess("fake_node_mod", log_path=tmp_path / "log.txt", domain_id=42)
    assert p.env["ROS_DOMAIN_ID"] == "42" and p.env["ROS_AUTOMATIC_DISCOVERY_RANGE"]
    p.start()
    assert wait_for(lambda: "up" in p.log_text(), 10.0)
    t0 = time.monotonic()
    rc = p.stop(timeout=0.5)
    assert rc == -15  # ended by SIGTERM after SIGINT was ignored
    assert time.monotonic() - t0 < 5.0
    assert not p.running()


def test_exit_code_and_log_capture(tmp_path, monkeypatch):
    _script(
        tmp_path,
        """
        import sys
        print("args:", sys.argv[1:], flush=True)
        sys.exit(3)
    """,
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with NodeProcess("fake_node_mod", params={"seed": 7}, log_path=tmp_path / "l.txt") as p:
        assert p.wait(timeout=20) == 3
    assert "seed:=7" in p.log_text()
