"""Malformed inputs through running nodes (the core checks of tests/unit/test_runtime_cores.py,
once over DDS): the planner refuses empty and huge instructions without ever logging one whole,
both nodes refuse a JointState that lists every joint twice and count it in /clap/diagnostics,
and a parameter outside its range stops a node at start-up naming the parameter and range."""

import time

import numpy as np
import pytest
from ros_harness import RosHarness, fresh_domain_id

pytestmark = [pytest.mark.ros]

from clap_ros.nodes.spawn import spawn_node  # noqa: E402
from clap_ros.robots import load_profile  # noqa: E402

MODEL = "models/default"
FR3 = load_profile("fr3")
NAMES = list(FR3.joint_names) + list(FR3.gripper.joint_names)
HOME = [float(v) for v in FR3.home] + [0.02, 0.02]


def diag_values(h, node_name):
    from clap_ros.nodes.diagnostics import status_values

    for m in reversed(h.since("/clap/diagnostics", 0.0)):
        for st in m.status:
            if st.name == node_name:
                return st, status_values(st)
    return None, {}


def test_bad_instructions_and_doubled_joint_names_are_refused(tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from clap_ros.nodes.common import LATCHED_QOS, STATE_QOS
    from clap_ros.runtime.messages import latent_to_bytes

    domain = fresh_domain_id()
    common = {"model": MODEL, "backend": "cpu", "threads": 1}
    plan = spawn_node(
        "clap_ros.nodes.planner_node",
        name="planner_node",
        domain_id=domain,
        log_path=tmp_path / "planner.log",
        params=dict(common, robot="fr3", planner_rate_hz=5.0),
        remaps={"/clap/latent": "/test/latent"},
    )
    act = spawn_node(
        "clap_ros.nodes.action_node",
        name="action_node",
        domain_id=domain,
        log_path=tmp_path / "action.log",
        params=dict(common, robot="fr3"),
        remaps={"/clap/latent": "/test/unused"},
    )
    h = RosHarness(domain)
    try:
        h.collect(JointTrajectory, "/clap/plan", STATE_QOS)
        h.collect(DiagnosticArray, "/clap/diagnostics", STATE_QOS)
        instr = h.node.create_publisher(String, "/clap/instruction", LATCHED_QOS)
        lat_pub = h.node.create_publisher(Image, "/test/latent", STATE_QOS)
        js_pub = h.node.create_publisher(JointState, FR3.driver.joint_states_topic, STATE_QOS)
        lat = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)

        def feed(seconds, names=NAMES, pos=HOME):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                m = Image(encoding="32FC1")
                m.header.stamp = h.node.get_clock().now().to_msg()
                m.height, m.width, m.step, m.data = latent_to_bytes(lat)
                lat_pub.publish(m)
                js = JointState(name=list(names), position=list(pos))
                js.header.stamp = h.node.get_clock().now().to_msg()
                js_pub.publish(js)
                time.sleep(0.05)

        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline and not (
            "planning at" in plan.log_text() and "action_node:" in act.log_text()
        ):
            time.sleep(0.5)
        assert "planning at" in plan.log_text(), plan.log_text(tail=3000)
        assert "action_node:" in act.log_text(), act.log_text(tail=3000)

        instr.publish(String(data="   "))
        feed(2.0)
        huge = "pick the cube " * 7200  # ~100,000 characters
        instr.publish(String(data=huge))
        feed(2.0)
        assert h.since("/clap/plan", 0.0) == []  # never planned with either
        log = plan.log_text()
        assert "empty instruction" in log, log[-3000:]
        assert "%d characters" % len(huge.strip()) in log, log[-3000:]
        assert max(len(line) for line in log.splitlines()) < 1000  # never logged whole
        st, vals = diag_values(h, "planner_node")
        assert int(vals.get("instructions_refused", 0)) >= 2, vals

        instr.publish(String(data="put the red cube in the blue bowl"))
        feed(2.0)
        assert len(h.since("/clap/plan", 0.0)) >= 2  # a good one plans

        feed(2.5, names=NAMES + NAMES, pos=HOME + HOME)  # every joint name twice
        t_bad = time.monotonic()

        def refused():
            _, pv = diag_values(h, "planner_node")
            st, av = diag_values(h, "action_node")
            ok = (
                int(pv.get("joint_states_refused", 0)) >= 1
                and int(av.get("joint_states_refused", 0)) >= 1
            )
            return (st, av) if ok else None

        got = h.wait_for(refused, 5.0)
        assert got is not None, diag_values(h, "action_node")
        st, av = got
        assert "more than once" in av["joint_error"], av
        assert int(av["tracking_faults"]) == 0 and av["state"] == "hold"
        assert "more than once" in act.log_text()
        assert plan.running() and act.running() and t_bad > 0
    finally:
        h.close()
        codes = (plan.stop(), act.stop())
    assert codes == (0, 0), (plan.log_text(tail=2000), act.log_text(tail=2000))
    assert "Traceback" not in plan.log_text() and "Traceback" not in act.log_text()


def test_a_parameter_out_of_range_stops_the_node_naming_it_and_the_range(tmp_path):
    p = spawn_node(
        "clap_ros.nodes.action_node",
        domain_id=fresh_domain_id(),
        log_path=tmp_path / "a.log",
        params={"model": MODEL, "backend": "cpu", "watchdog_latent_s": 100.0},
    )
    try:
        assert p.wait(60.0) == 2, p.log_text(tail=3000)
    finally:
        p.stop()
    log = p.log_text()
    assert "parameter 'watchdog_latent_s' = 100.0: out of range, allowed 0.001 .. 60 s" in log, log
    assert "Traceback" not in log
