"""The closed loop end to end: `clap-ros eval-sim` runs the whole bringup graph (sim_driver,
encoder_node, planner_node, action_node as separate processes over DDS on loopback) with the
shipped default bundle for one short `reach` episode.

Task success is not asserted: the default bundle is small and may fail the task. What is asserted
is that the stack really ran as a closed loop: the planner planned, the action node sent commands
that moved the arm, the driver rejected none (every command was within the limits), no node
reported an error, and the result files and the episode bag were written.
"""

import json
import random

import pytest

from clap_ros import topics as T

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_one_reach_episode_runs_the_full_stack(tmp_path, capsys):
    from clap_ros.cli import main
    from clap_ros.data.bags import BagReader
    from clap_ros.robots import load_profile

    out = tmp_path / "eval"
    code = main(
        [
            "eval-sim",
            "--robot",
            "fr3",
            "--task",
            "reach",
            "--episodes",
            "1",
            "--seed",
            "3",
            "--timeout",
            "8",
            "--model",
            "models/default",
            "--backend",
            "cpu",
            "--out",
            str(out),
            "--record-bags",
            "--no-progress",
            # The shipped bundle trips the sim FR3's motion-discontinuity reflex within about
            # 0.5 s (issue 13 item 4 is open); this test checks the stack's plumbing, and
            # tests/unit/test_sim_driver_reflexes.py the reflexes.
            "--no-reflexes",
            "--domain-id",
            str(random.SystemRandom().randint(201, 230)),
        ]
    )
    printed = capsys.readouterr()
    result = json.loads((out / "result.json").read_text())
    assert code == 0, (result["error"], printed.err[-3000:])
    assert result["complete"] is True and result["error"] == ""
    assert (out / "report.md").read_text().startswith("# Closed-loop evaluation: fr3")
    assert "| reach |" in printed.out

    (ep,) = result["episodes"]
    assert ep["task"] == "reach" and ep["seed"] == 3 and ep["error"] == ""
    assert ep["instruction"], "no instruction was published"
    assert ep["plans"] > 0, "the planner produced no plan while the arm was enabled"
    assert ep["commands"] > 0, "the action node sent no command"
    assert ep["arm_motion_rad"] > 0.005, "the arm did not move"
    assert ep["rejected_commands"] == 0, "the driver rejected commands (limits/names)"
    assert ep["duration_s"] > 0.5
    worst = ep["worst_diagnostics"]
    assert {"encoder_node", "planner_node", "action_node"} <= set(worst), worst
    errors = {n: d for n, d in worst.items() if d["level"] >= 2}
    assert not errors, "a node reported an error while enabled: %s" % errors
    summary = result["tasks"]["reach"]
    assert summary["episodes"] == 1 and summary["successes"] == int(ep["success"])

    # the bag holds what crossed the wire during the episode
    profile = load_profile("fr3")
    with BagReader(ep["bag"]) as bag:
        counts = bag.message_counts
        outcomes = [json.loads(m.data) for _, _, _, m in bag.messages([T.EPISODE_OUTCOME])]
    assert counts[profile.driver.trajectory_topic] > 0
    assert counts[T.PLAN] > 0 and counts[T.CAMERA_IMAGE] > 0
    assert counts[profile.driver.joint_states_topic] > 0
    assert outcomes and outcomes[0]["seed"] == 3 and outcomes[0]["success"] == ep["success"]


def test_clap_ros_launch_bringup_drives_the_sim_and_stops_on_sigint(tmp_path):
    """`clap-ros launch bringup use_sim:=true ...` (what a pip install has instead of ros2
    launch) starts the four nodes; enabled on start with an instruction, the action node commands
    the simulated arm; Ctrl-C stops the whole graph cleanly."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    from clap_ros.nodes.common import COMMAND_QOS
    from clap_ros.robots import load_profile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros"))
    from ros_harness import RosHarness, fresh_domain_id

    domain = fresh_domain_id()
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    drv = load_profile("fr3").driver
    harness = RosHarness(domain)
    harness.collect(JointTrajectory, drv.trajectory_topic, COMMAND_QOS)
    harness.collect(Float64MultiArray, drv.gripper_command_topic, COMMAND_QOS)
    log_dir = tmp_path / "launch"
    console = open(tmp_path / "console.txt", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clap_ros.cli",
            "launch",
            "--log-dir",
            str(log_dir),
            "bringup",
            "use_sim:=true",
            "task:=reach",
            "seed:=2",
            "backend:=cpu",
            "enable_on_start:=true",
            "instruction:=move the gripper to the red ball",
        ],
        stdout=console,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        got = harness.wait_for(
            lambda: len(harness.messages.get(drv.trajectory_topic, [])) >= 5, timeout=120
        )
        assert proc.poll() is None, "the graph stopped early"
        assert got, "no arm trajectory from action_node within 120 s; logs in %s" % log_dir
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        harness.close()
        console.close()
    text = (tmp_path / "console.txt").read_text(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    for name in ("sim_driver", "encoder_node", "planner_node", "action_node"):
        assert "started %s" % name in text
        assert (log_dir / ("%s.params.yaml" % name)).is_file()
    assert "SIGINT received" in text
    trajectories = [m for _, m in harness.messages[drv.trajectory_topic]]
    assert all(list(m.joint_names) == list(load_profile("fr3").joint_names) for m in trajectories)


def test_one_reach_episode_in_direct_mode_runs_the_cores(tmp_path, capsys):
    """`clap-ros eval-sim --mode direct`: the same episode in one process on a virtual clock (the
    driver core + the CLAP cores through VirtualStack), with the same result files and bag."""
    from clap_ros.cli import main
    from clap_ros.data.bags import BagReader
    from clap_ros.robots import load_profile

    out = tmp_path / "eval"
    code = main(
        [
            "eval-sim",
            "--mode",
            "direct",
            "--robot",
            "fr3",
            "--task",
            "reach",
            "--episodes",
            "1",
            "--seed",
            "3",
            "--timeout",
            "8",
            "--model",
            "models/default",
            "--backend",
            "cpu",
            "--out",
            str(out),
            "--record-bags",
            "--no-progress",
            # The shipped bundle trips the sim FR3's motion-discontinuity reflex within about
            # 0.5 s (issue 13 item 4 is open); this test checks the stack's plumbing, and
            # tests/unit/test_sim_driver_reflexes.py the reflexes.
            "--no-reflexes",
        ]
    )
    printed = capsys.readouterr()
    result = json.loads((out / "result.json").read_text())
    assert code == 0, (result["error"], printed.err[-3000:])
    assert result["complete"] is True and result["mode"] == "direct"
    (ep,) = result["episodes"]
    assert ep["error"] == "" and ep["instruction"]
    assert ep["plans"] > 0 and ep["commands"] > 0
    assert ep["arm_motion_rad"] > 0.005, "the arm did not move"
    assert ep["rejected_commands"] == 0
    assert ep["duration_s"] >= 8.0
    profile = load_profile("fr3")
    with BagReader(ep["bag"]) as bag:
        counts = bag.message_counts
    assert counts[profile.driver.trajectory_topic] >= ep["commands"]
    assert counts[T.CAMERA_IMAGE] > 100 and counts[profile.driver.joint_states_topic] > 200
