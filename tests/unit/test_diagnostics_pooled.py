"""Run-long pooled latency samples of DiagnosticsState (no ROS): the figure `make bench` reports
for frame -> first command even when no sample fell into the last window."""

import numpy as np
import pytest

from clap_ros.nodes.diagnostics import DiagnosticsState, PooledSamples


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_pooled_figures_survive_the_window():
    clk = FakeClock()
    d = DiagnosticsState(rate_window_s=5.0, clock=clk)
    for i in range(100):
        d.latency("frame_to_command", (i + 1) * 1e-3, pooled=True)  # 1..100 ms
        clk.t += 0.1
    d.latency("frame_to_chunk", 0.02)  # not pooled
    clk.t += 60.0  # everything left the window
    items = dict(d.summary()[2])
    assert "frame_to_command_p50_ms" not in items  # the windowed figure is gone
    assert items["frame_to_command_run_n"] == "100"
    assert float(items["frame_to_command_run_p50_ms"]) == pytest.approx(50.5, abs=0.05)
    assert float(items["frame_to_command_run_p99_ms"]) == pytest.approx(99.01, abs=0.05)
    assert not any(k.startswith("frame_to_chunk_run") for k in items)


def test_reservoir_keeps_the_distribution_and_counts_every_sample():
    pool = PooledSamples(capacity=1000, seed=1)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, 20000)
    for v in x:
        pool.add(float(v))
    assert pool.n == 20000
    p50, p99 = pool.percentiles()
    assert p50 == pytest.approx(0.5, abs=0.05)
    assert p99 == pytest.approx(0.99, abs=0.02)


def test_percentiles_follow_new_samples():
    pool = PooledSamples(capacity=10)
    pool.add(0.01)
    assert pool.percentiles() == (pytest.approx(0.01), pytest.approx(0.01))
    pool.add(0.03)
    assert pool.percentiles()[0] == pytest.approx(0.02)
