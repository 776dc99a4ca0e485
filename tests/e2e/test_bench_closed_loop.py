"""`clap-ros bench`'s closed-loop section end to end, shortened: one short fr3 reach episode (same
seed) in ROS mode (the bringup graph over DDS) and in direct mode (one process, virtual clock),
their wall times per episode and ratio, and frame -> first command pooled over the ROS-mode run.

The ratio itself is not asserted (one 4 s episode on a shared machine says little; `make bench`
measures it on 20 episodes); what is asserted is that both modes ran the same episode, that each
figure comes from what ran, and that the pooled latency has samples.
"""

import json
import random

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_bench_closed_loop_compares_modes_and_pools_frame_to_command(tmp_path, capsys, monkeypatch):
    from clap_ros.cli import main

    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.SystemRandom().randint(201, 230)))
    out = tmp_path / "bench.json"
    code = main(
        ["bench", "--only", "closed_loop", "--episodes", "1", "--timeout", "4", "--json", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed[-3000:]
    fig = json.loads(out.read_text())["closed_loop"]
    ros, direct = fig["modes"]["ros"], fig["modes"]["direct"]
    for m in (ros, direct):
        assert m["episodes"] == 1 and m["error"] == "", m
        # the episode ran its 4 s of sim time (or reached the goal earlier) in some wall time
        assert m["wall_per_episode_mean_s"] > 0 and 0 < m["sim_per_episode_mean_s"] <= 4.0 + 1.0
        assert m["run_wall_s"] >= m["wall_per_episode_mean_s"]
        assert m["cpu_per_episode_s"] > 0 and m["load_average"] >= 0
    assert fig["speed_ratio"] == pytest.approx(
        ros["wall_per_episode_mean_s"] / direct["wall_per_episode_mean_s"]
    )
    pooled = fig["frame_to_command_pooled"]
    assert pooled is not None and pooled["n"] > 0, "no chunk reached a command over DDS"
    assert 0 < pooled["p50_ms"] <= pooled["p99_ms"]
    lines = printed.splitlines()
    assert any(ln.startswith("ros ") for ln in lines)
    assert any(ln.startswith("direct ") for ln in lines)
    assert "speed-up ros/direct (mean wall s per episode): %.1fx" % fig["speed_ratio"] in printed
    first = [ln for ln in lines if ln.startswith("camera frame -> first command")]
    assert first and "%d, pooled over the run" % pooled["n"] in first[0]
