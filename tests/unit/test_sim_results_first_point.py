"""eval-sim (both modes) reports the trajectories' first points vs the measured state: per
episode in result.json, pooled per task, and as a table in report.md."""

import json

from clap_ros.control.first_point import FirstPointStats, first_point
from clap_ros.eval.sim_results import EpisodeOutcome, EvalConfig, report_markdown, summarize


def _summary(fractions):
    st = FirstPointStats()
    for f in fractions:
        st.add(first_point([f * 0.1], [0.0], 0.1, [1.0]))
    return st.summary()


def test_first_points_are_pooled_per_task_and_reported():
    cfg = EvalConfig(tasks=("reach", "push"), episodes=2, mode="direct")
    eps = [
        EpisodeOutcome(task="reach", seed=0, first_point=_summary([0.1] * 99 + [2.0])),
        EpisodeOutcome(task="reach", seed=1, first_point=_summary([0.2] * 100)),
        EpisodeOutcome(task="push", seed=0),  # e.g. a ROS-mode status from another episode
        EpisodeOutcome(task="push", seed=1),
    ]
    result = summarize(cfg, "models/default", eps, 1.0)
    fp = result["tasks"]["reach"]["first_point"]
    assert fp["count"] == 200 and fp["over_limit"] == 1 and fp["episodes"] == 2
    assert fp["velocity_fraction"]["max"] == 2.0
    assert 0.1 <= fp["velocity_fraction"]["p50"] <= 0.2 * 1.13
    assert result["tasks"]["push"]["first_point"] is None
    assert result["episodes"][0]["first_point"]["count"] == 100
    json.dumps(result)
    md = report_markdown(result)
    assert "Trajectory first points vs the measured state" in md
    row = [line for line in md.splitlines() if line.startswith("| reach | 200 |")]
    assert row and row[0].endswith("| 1 |")
    assert "| push | " not in md.split("Trajectory first points")[1]


def test_no_table_without_records():
    cfg = EvalConfig(tasks=("reach",), episodes=1)
    result = summarize(cfg, "m", [EpisodeOutcome(task="reach", seed=0)], 1.0)
    assert "Trajectory first points" not in report_markdown(result)
