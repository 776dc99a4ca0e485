"""Ctrl-C in a terminal (issue 16 item 3): the terminal sends SIGINT to the whole process group,
and ros2 launch forwards one more to each node. Every node must exit 0 with no traceback, the
action node bringing a moving arm to rest first.

run_node is checked on a tiny node (1, 2 and 3 signals, one arriving during a slow cleanup that
still publishes), then the real bringup graph (sim_driver, encoder_node, planner_node,
action_node; enabled, so the arm moves) is stopped the way a terminal under ros2 launch does.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from ros_harness import fresh_domain_id

from clap_ros.launching.graph import (
    BRINGUP,
    enabled_nodes,
    node_parameters,
    node_remaps,
    parse_assignments,
    resolve_arguments,
)
from clap_ros.nodes.spawn import NodeProcess, wait_for

pytestmark = [pytest.mark.ros]
REPO = Path(__file__).resolve().parents[2]

TINY_NODE = """
    import os, sys, threading, time
    from rclpy.node import Node
    from std_msgs.msg import String
    from clap_ros.nodes.common import run_node

    class Tiny(Node):
        def __init__(self):
            super().__init__("tiny")
            self.pub = self.create_publisher(String, "/tiny", 10)
            threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
            print("ready", flush=True)

        def shutdown(self):
            time.sleep(float(os.environ.get("CLEANUP_S", "0.6")))   # a second signal lands here
            self.pub.publish(String(data="bye"))     # the context is still valid
            print("cleanup done", flush=True)

    code = run_node(Tiny)
    time.sleep(float(os.environ.get("AFTER_S", "0")))   # the interpreter's own exit, stretched
    sys.exit(code)
"""


@pytest.mark.parametrize(
    "n_signals, sig",
    [(1, signal.SIGINT), (2, signal.SIGINT), (1, signal.SIGTERM), (2, signal.SIGTERM)],
)
def test_run_node_exits_0_without_traceback(tmp_path, n_signals, sig):
    script = tmp_path / "tiny.py"
    script.write_text(textwrap.dedent(TINY_NODE))
    env = dict(
        os.environ, PYTHONPATH=str(REPO), ROS_DOMAIN_ID=str(fresh_domain_id()), PYTHONUNBUFFERED="1"
    )
    p = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        assert p.stdout.readline().strip() == b"ready"
        time.sleep(0.3)  # spinning
        for _ in range(n_signals):
            os.killpg(p.pid, sig)
            time.sleep(0.15)
        out = p.communicate(timeout=20)[0].decode()
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, out
    assert "cleanup done" in out and "Traceback" not in out, out
    assert "[tiny] stopped by %s" % signal.Signals(sig).name in out


def test_a_second_signal_after_a_fast_cleanup_is_no_keyboard_interrupt(tmp_path):
    script = tmp_path / "tiny.py"
    script.write_text(textwrap.dedent(TINY_NODE))
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO),
        ROS_DOMAIN_ID=str(fresh_domain_id()),
        PYTHONUNBUFFERED="1",
        CLEANUP_S="0",
        AFTER_S="1.0",
    )
    p = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    assert p.stdout.readline().strip() == b"ready"
    time.sleep(0.3)
    os.killpg(p.pid, signal.SIGINT)
    assert p.stdout.readline().strip() == b"cleanup done"  # run_node has returned (or is about to)
    time.sleep(0.3)
    os.killpg(p.pid, signal.SIGINT)  # launch's forwarded one, late
    out = p.communicate(timeout=20)[0].decode()
    assert p.returncode == 0 and "Traceback" not in out, (p.returncode, out)


def test_a_third_signal_exits_at_once(tmp_path):
    script = tmp_path / "tiny.py"
    script.write_text(textwrap.dedent(TINY_NODE))
    env = dict(
        os.environ, PYTHONPATH=str(REPO), ROS_DOMAIN_ID=str(fresh_domain_id()), CLEANUP_S="2.0"
    )
    p = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    assert p.stdout.readline().strip() == b"ready"
    time.sleep(0.3)
    for _ in range(3):
        os.killpg(p.pid, signal.SIGINT)
        # apart, so CPython cannot merge two into one handler call (it would, before it runs)
        time.sleep(0.25)
    out = p.communicate(timeout=20)[0].decode()
    assert p.returncode == 128 + signal.SIGINT and "exiting without cleanup" in out, out
    assert "cleanup done" not in out and "Traceback" not in out


def _start_graph(tmp_path, domain):
    """The bringup graph's nodes as ros2 launch starts them from a terminal: one process group
    (the first node leads it), each with its merged parameters."""
    values = resolve_arguments(
        BRINGUP,
        parse_assignments(
            [
                "use_sim:=true",
                "task:=reach",
                "seed:=2",
                "backend:=cpu",
                "enable_on_start:=true",
                "instruction:=move the gripper to the red ball",
            ]
        ),
    )
    procs = []
    for spec in enabled_nodes(BRINGUP, values):
        path = tmp_path / ("%s.params.yaml" % spec.name)
        path.write_text(
            yaml.safe_dump({spec.name: {"ros__parameters": node_parameters(spec, values)}})
        )
        p = NodeProcess(
            spec.module,
            params_file=path,
            name=spec.name,
            remaps=node_remaps(spec, values),
            domain_id=domain,
            log_path=tmp_path / ("%s.log" % spec.name),
            own_group=not procs,
            process_group=procs[0].pid if procs else None,
        )
        procs.append(p.start())
    return procs


@pytest.mark.slow
def test_ctrl_c_under_launch_stops_the_running_graph_cleanly(tmp_path):
    procs = _start_graph(tmp_path, fresh_domain_id())
    by_name = {p.name: p for p in procs}
    action = by_name["action_node"]
    try:
        running = wait_for(
            lambda: "hold -> run" in action.log_text() or any(not p.running() for p in procs),
            timeout=150,
            period=0.2,
        )
        dead = {p.name: p.returncode for p in procs if not p.running()}
        assert not dead, "nodes died before the stop: %s\n%s" % (
            dead,
            "\n".join(p.log_text(tail=1500) for p in procs),
        )
        assert running, "the arm never ran:\n%s" % action.log_text(tail=3000)
        time.sleep(1.0)  # moving
        os.killpg(procs[0].pid, signal.SIGINT)  # the terminal's Ctrl-C, to every node
        time.sleep(0.05)
        for p in procs:  # ros2 launch forwards one more to each
            p.send_signal(signal.SIGINT)
        codes = {p.name: p.wait(timeout=30) for p in procs}
    finally:
        for p in procs:
            p.stop(timeout=2.0)
    logs = {p.name: p.log_text() for p in procs}
    assert codes == {name: 0 for name in by_name}, (codes, {k: v[-2000:] for k, v in logs.items()})
    for name, text in logs.items():
        assert "Traceback" not in text and "KeyboardInterrupt" not in text, (name, text[-3000:])
        assert "stopped by SIGINT" in text, name
    assert "shutting down: stopping the arm first" in logs["action_node"]
    assert "arm stopped; exiting" in logs["action_node"], logs["action_node"][-3000:]
