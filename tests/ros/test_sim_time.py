"""sim_driver on sim time, as fast as possible: /clock, stamps, a UR5e profile, SIGTERM, and the
parameter checks that refuse a configuration before anything runs."""

import signal
import time

import numpy as np
import pytest
from ros_harness import RosHarness, fresh_domain_id

pytestmark = [pytest.mark.ros]

from clap_ros.nodes.spawn import spawn_node  # noqa: E402
from clap_ros.robots import load_profile  # noqa: E402

UR = load_profile("ur5e")


def to_s(stamp):
    return stamp.sec + stamp.nanosec * 1e-9


def test_fast_sim_time_driver_publishes_clock_and_follows_trajectories(tmp_path):
    from builtin_interfaces.msg import Duration
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from clap_ros.nodes.common import CLOCK_QOS, LATCHED_QOS, STATE_QOS

    domain = fresh_domain_id()
    driver = spawn_node(
        "clap_ros.nodes.sim_driver",
        name="sim_driver",
        domain_id=domain,
        log_path=tmp_path / "driver.log",
        params={
            "robot": "ur5e",
            "task": "push",
            "use_sim_time": True,
            "real_time_factor": 0.0,
            "camera_rate_hz": 0.0,
            "joint_states_rate_hz": 20.0,
            "clock_rate_hz": 50.0,
        },
    )
    h = RosHarness(domain)
    try:
        h.collect(Clock, "/clock", CLOCK_QOS)
        h.collect(JointState, "/joint_states", STATE_QOS)
        h.collect(String, "/sim/status", LATCHED_QOS)
        pub = h.node.create_publisher(JointTrajectory, UR.driver.trajectory_topic, 10)
        assert h.wait_for(
            lambda: h.latest("/joint_states") is not None and pub.get_subscription_count() > 0, 90.0
        ), driver.log_text(tail=3000)
        t0 = time.monotonic()
        time.sleep(1.5)
        clocks = [to_s(m.clock) for m in h.since("/clock", t0)]
        assert len(clocks) > 10 and np.all(np.diff(clocks) > 0)
        speed = (clocks[-1] - clocks[0]) / (time.monotonic() - t0)
        assert speed > 1.2, "as fast as possible ran at only %.2fx real time" % speed
        js = h.since("/joint_states", t0)
        assert list(js[-1].name) == UR.joint_names + UR.gripper.joint_names
        assert clocks[0] <= to_s(js[-1].header.stamp) <= clocks[-1] + 0.1  # stamped in sim time
        # a trajectory lasting 2 s of sim time is done in well under 2 s of wall time
        q0 = UR.reorder(js[-1].name, js[-1].position)
        target = q0 + np.array([0.3, -0.2, 0.2, 0.1, 0.1, -0.3])
        msg = JointTrajectory(joint_names=list(UR.joint_names))
        msg.points = [
            JointTrajectoryPoint(
                positions=[float(x) for x in target],
                velocities=[0.0] * 6,
                time_from_start=Duration(sec=2, nanosec=0),
            )
        ]
        t_send = time.monotonic()
        pub.publish(msg)

        def reached():
            m = h.latest("/joint_states")
            return np.max(np.abs(UR.reorder(m.name, m.position) - target)) < 0.02

        assert h.wait_for(reached, 20.0)
        assert h.status()["rejected_commands"] == 0
        wall = time.monotonic() - t_send
        # a real-time driver needs >= 2 s for this
        assert wall < 2.0, "2 s of sim time took %.2f s of wall time" % wall
    finally:
        h.close()
        driver.proc.send_signal(signal.SIGTERM)
        rc = driver.wait(timeout=15.0)
        driver.stop()
    assert rc == 0, "SIGTERM did not shut the driver down cleanly:\n%s" % driver.log_text(tail=2000)


@pytest.mark.parametrize(
    "params,message",
    [
        ({"real_time_factor": 0.0}, "needs use_sim_time"),
        ({"task": "juggle"}, "must be one of"),
        ({"robot": "kuka"}, "unknown robot"),
        ({"camera_rate_hz": -1.0}, "out of range, allowed 0 .. 240 Hz"),
        ({"seed": -3}, "seed"),
        ({"camera_width": "wide"}, "camera_width"),
    ],
)
def test_bad_parameters_refused_with_a_clear_message(tmp_path, params, message):
    p = spawn_node(
        "clap_ros.nodes.sim_driver",
        params=params,
        domain_id=fresh_domain_id(),
        log_path=tmp_path / "driver.log",
    )
    rc = p.wait(timeout=60.0)
    p.stop()
    assert rc == 2, p.log_text(tail=2000)
    assert message in p.log_text()
