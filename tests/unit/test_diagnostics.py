"""DiagnosticsState bookkeeping (no ROS) and the DiagnosticArray the publisher builds."""

import threading

import pytest

from clap_ros.nodes.diagnostics import ERROR, OK, WARN, DiagnosticsState


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_rate_of_a_steady_stream_and_window():
    clk = FakeClock()
    d = DiagnosticsState(rate_window_s=2.0, clock=clk)
    for _ in range(21):  # 10 Hz for 2 s
        d.tick("frames")
        clk.t += 0.1
    assert d.rate("frames") == pytest.approx(10.0, rel=0.02)
    clk.t += 5.0  # everything left the window
    assert d.rate("frames") == 0.0
    level, msg, items = d.summary()
    assert dict(items)["frames_count"] == "21"


def test_latency_percentiles_in_ms():
    clk = FakeClock()
    d = DiagnosticsState(clock=clk)
    for i in range(100):
        d.latency("e2e", (i + 1) * 1e-3)  # 1..100 ms
    st = d.latency_stats("e2e")
    assert st["p50"] == pytest.approx(0.0505, abs=1e-4)
    assert st["max"] == pytest.approx(0.1)
    items = dict(d.summary()[2])
    assert float(items["e2e_p99_ms"]) == pytest.approx(99.0, abs=0.1)
    assert float(items["e2e_max_ms"]) == pytest.approx(100.0)


def test_staleness_drives_level_and_message():
    clk = FakeClock()
    d = DiagnosticsState(clock=clk)
    d.watch("image", 0.5)
    level, msg, items = d.summary()
    assert level == WARN and "image never received" in msg
    d.touch("image")
    clk.t += 0.2
    level, msg, items = d.summary()
    assert level == OK and msg == "ok"
    assert float(dict(items)["image_age_s"]) == pytest.approx(0.2)
    clk.t += 1.0
    level, msg, _ = d.summary()
    assert level == WARN and "image stale" in msg
    assert d.stale_inputs() == ["image"]


def test_problem_raises_level_until_cleared():
    d = DiagnosticsState(clock=FakeClock())
    d.set("backend", "cpu")
    d.set("ratio", 0.123456)
    d.problem("nan", ERROR, "model produced NaN")
    level, msg, items = d.summary()
    assert level == ERROR and msg == "model produced NaN"
    assert dict(items)["backend"] == "cpu" and dict(items)["ratio"] == "0.1235"
    d.clear("nan")
    assert d.summary()[0] == OK


def test_concurrent_ticks_are_all_counted():
    d = DiagnosticsState()

    def work():
        for _ in range(1000):
            d.tick("x")
            d.latency("l", 0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert dict(d.summary()[2])["x_count"] == "4000"


def test_publisher_message_has_node_name_level_and_extra():
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node

    from clap_ros.nodes.diagnostics import DiagnosticsPublisher, status_values

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = Node("diag_probe", context=ctx)
        pub = DiagnosticsPublisher(
            node, period_s=10.0, hardware_id="cam0", extra=lambda: {"queue_depth": 3}
        )
        pub.watch("joint_states", 0.1)
        pub.tick("plans")
        msg = pub.make_message()
        (st,) = msg.status
        assert st.name == "diag_probe" and st.hardware_id == "cam0"
        assert st.level == bytes([WARN]) and "joint_states never received" in st.message
        vals = status_values(st)
        assert vals["queue_depth"] == "3" and vals["plans_count"] == "1"
        pub.destroy()
        node.destroy_node()
    finally:
        ctx.try_shutdown()
