"""`clap-ros launch sim` as a user runs it: a subprocess that starts the real sim_driver and
expert_node processes over DDS (loopback, private domain), seen from this test's own rclpy node;
Ctrl-C stops every node cleanly, and a node that dies takes the graph down with a non-zero exit."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from ros_harness import RosHarness, fresh_domain_id

pytestmark = [pytest.mark.ros]


class Launch:
    """The runner in its own process, its combined output in a file."""

    def __init__(self, tmp_path, domain, *args):
        self.out_path = tmp_path / "launch.out"
        env = dict(
            os.environ,
            ROS_DOMAIN_ID=str(domain),
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
            PYTHONUNBUFFERED="1",
        )
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clap_ros.cli",
                "launch",
                "sim",
                *args,
                "--log-dir",
                str(tmp_path / "logs"),
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )

    def text(self):
        return self.out_path.read_text(errors="replace")

    def pids(self):
        return {
            m.group(1): int(m.group(2))
            for m in re.finditer(r"started (\w+) \(pid (\d+)\)", self.text())
        }

    def wait_for_text(self, needle, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return True
            if self.proc.poll() is not None:
                return needle in self.text()
            time.sleep(0.1)
        return False

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


def alive(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


@pytest.fixture
def harness():
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from clap_ros.nodes.common import LATCHED_QOS, STATE_QOS

    h = RosHarness(fresh_domain_id(), name="launch_test")
    h.collect(JointState, "/joint_states", STATE_QOS)
    h.collect(String, "/sim/status", LATCHED_QOS)
    yield h
    h.close()


def _reached(h):
    status = h.status()
    return bool(status and status["task"] == "reach" and status["success"])


def test_launch_sim_with_expert_then_ctrl_c_stops_every_node(tmp_path, harness):
    launch = Launch(
        tmp_path,
        harness.domain_id,
        "expert:=true",
        "task:=reach",
        "camera_width:=48",
        "camera_height:=32",
        "camera_rate_hz:=5.0",
    )
    try:
        assert harness.wait_for(lambda: harness.latest("/joint_states") is not None, 90.0), (
            "no /joint_states from the launched graph:\n" + launch.text()
        )
        assert launch.wait_for_text("expert_node finished (exit code 0)", 60.0), launch.text()
        # the expert drove the arm through the launched driver, and the driver is still up
        assert harness.wait_for(lambda: _reached(harness), 10.0), (harness.status(), launch.text())
        assert launch.proc.poll() is None
        t0 = time.monotonic()
        n = len(harness.since("/joint_states", t0))
        assert harness.wait_for(lambda: len(harness.since("/joint_states", t0)) > n + 5, 10.0)
        pids = launch.pids()
        assert set(pids) == {"sim_driver", "expert_node"}
        text = launch.text()
        assert "[sim_driver] " in text and "[expert_node] " in text  # streamed with a prefix

        launch.proc.send_signal(signal.SIGINT)
        assert launch.proc.wait(timeout=30) == 0, launch.text()
        assert "sim_driver stopped (exit code 0)" in launch.text()
        assert not [name for name, pid in pids.items() if alive(pid)]
        # the driver really stopped publishing
        t1 = time.monotonic() + 0.5
        time.sleep(1.5)
        assert harness.since("/joint_states", t1) == []
        params = (tmp_path / "logs" / "sim_driver.params.yaml").read_text()
        assert "camera_width: 48" in params and "task: reach" in params
    finally:
        launch.close()


def test_a_dying_node_stops_the_graph_with_an_error(tmp_path, harness):
    launch = Launch(
        tmp_path,
        harness.domain_id,
        "expert:=true",
        "task:=pick_place",
        "camera_width:=48",
        "camera_height:=32",
        "camera_rate_hz:=5.0",
    )
    try:
        assert harness.wait_for(lambda: harness.latest("/joint_states") is not None, 90.0), (
            "no /joint_states from the launched graph:\n" + launch.text()
        )
        pids = launch.pids()
        os.kill(pids["sim_driver"], signal.SIGKILL)
        assert launch.proc.wait(timeout=30) == 1, launch.text()
        text = launch.text()
        assert "node sim_driver died (exit code -9, killed by SIGKILL); stopping the graph" in text
        assert "graph sim stopped because sim_driver exited" in text
        assert not [name for name, pid in pids.items() if alive(pid)]
    finally:
        launch.close()
