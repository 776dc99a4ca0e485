"""sim_driver's reflexes over DDS: driven into the table, the driver stops the arm, says why on
/sim/robot_error, /sim/status and /clap/diagnostics, refuses arm commands, and takes them again
after the error-recovery service (std_srvs/Trigger on the profile's recovery_service)."""

import json
import time

import numpy as np
import pytest
from ros_harness import RosHarness, fresh_domain_id

pytestmark = [pytest.mark.ros]

from clap_ros.nodes.spawn import spawn_node  # noqa: E402
from clap_ros.robots import load_profile  # noqa: E402

PROFILE = load_profile("fr3")
NAMES = list(PROFILE.joint_names)


@pytest.fixture(scope="module")
def ros(tmp_path_factory):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from clap_ros.nodes.common import LATCHED_QOS, STATE_QOS

    domain = fresh_domain_id()
    log = tmp_path_factory.mktemp("driver") / "sim_driver.log"
    driver = spawn_node(
        "clap_ros.nodes.sim_driver",
        name="sim_driver",
        domain_id=domain,
        log_path=log,
        params={
            "robot": "fr3",
            "task": "reach",
            "seed": 0,
            "camera_rate_hz": 0.0,
            "joint_states_rate_hz": 100.0,
            "reflexes": True,
        },
    )
    h = RosHarness(domain)
    h.driver = driver
    h.collect(JointState, "/joint_states", STATE_QOS)
    h.collect(String, "/sim/status", LATCHED_QOS)
    h.collect(String, PROFILE.reflexes.error_topic, LATCHED_QOS)
    h.collect(DiagnosticArray, "/clap/diagnostics", STATE_QOS)
    h.traj_pub = h.node.create_publisher(JointTrajectory, PROFILE.driver.trajectory_topic, 10)
    up = h.wait_for(lambda: h.latest("/joint_states") is not None and h.status() is not None, 90.0)
    if not up:
        text = driver.log_text(tail=4000)
        driver.stop()
        h.close()
        pytest.fail("sim_driver did not come up; log:\n%s" % text)
    assert h.wait_for(lambda: h.traj_pub.get_subscription_count() > 0, 30.0)
    yield h
    h.close()
    rc = driver.stop()
    assert rc == 0, driver.log_text(tail=4000)


def trajectory(q_from, q_to, duration, n=8):
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    msg = JointTrajectory()
    msg.joint_names = NAMES
    for k in range(1, n + 1):
        s = k / n
        p = JointTrajectoryPoint()
        p.positions = [float(x) for x in q_from + s * (q_to - q_from)]
        t = duration * s
        p.time_from_start = Duration(sec=int(t), nanosec=int((t % 1) * 1e9))
        msg.points.append(p)
    return msg


def measured(h):
    js = h.latest("/joint_states")
    return PROFILE.reorder(list(js.name), list(js.position))


def robot_error(h):
    m = h.latest(PROFILE.reflexes.error_topic)
    return json.loads(m.data) if m is not None else None


def test_into_the_table_reflex_hold_refusal_recovery(ros):
    from std_srvs.srv import Trigger

    q0 = measured(ros)
    q1 = q0.copy()
    q1[1] += 1.8  # shoulder down: the wrist and the hand into the table top
    ros.traj_pub.publish(trajectory(q0, q1, 8.0))
    assert ros.wait_for(lambda: (robot_error(ros) or {}).get("reflex_active"), 30.0), (
        ros.driver.log_text(tail=3000)
    )
    err = robot_error(ros)
    assert err["reflex"]["reason"] in ("cartesian_reflex", "joint_reflex")
    assert ros.wait_for(lambda: (ros.status() or {}).get("reflex") is not None, 5.0)

    # diagnostics: ERROR naming the reflex
    def diag_error():
        for m in ros.since("/clap/diagnostics", 0.0):
            for s in m.status:
                if (
                    s.name.endswith("sim_driver")
                    and s.level == bytes([2])
                    and err["reflex"]["reason"] in s.message
                ):
                    return True
        return False

    assert ros.wait_for(diag_error, 5.0)
    assert "reflex %s" % err["reflex"]["reason"] in ros.driver.log_text(tail=20000)
    # the hold
    time.sleep(1.0)
    q_a = measured(ros)
    time.sleep(0.5)
    assert np.max(np.abs(measured(ros) - q_a)) < 2e-3
    # the refusal
    rejected = int(ros.status()["rejected_commands"])
    ros.traj_pub.publish(trajectory(measured(ros), q0, 2.0))
    assert ros.wait_for(lambda: int(ros.status()["rejected_commands"]) > rejected, 5.0)
    assert "refused until error recovery" in ros.driver.log_text(tail=20000)
    # the recovery (the arm is at rest by now)
    res = ros.call(Trigger, PROFILE.reflexes.recovery_service, Trigger.Request())
    assert res.success, res.message
    assert ros.wait_for(lambda: not robot_error(ros)["reflex_active"], 5.0)
    assert robot_error(ros)["recoveries"] == 1
    ros.traj_pub.publish(trajectory(measured(ros), q0, 3.0))
    assert ros.wait_for(lambda: np.max(np.abs(measured(ros) - q0)) < 0.02, 20.0)
    assert not robot_error(ros)["reflex_active"]
