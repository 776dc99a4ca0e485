"""clap_ros.control.first_point: one record, the accumulator, pooling (known answers)."""

import json
import math

import numpy as np
import pytest

from clap_ros.control.first_point import (
    LEAD_FLOOR_S,
    FirstPointStats,
    describe,
    first_point,
    lead_time,
    pooled,
    trajectory_first_point,
)
from clap_ros.robots import load_profile


def test_one_record_is_the_max_over_joints():
    fp = first_point([0.1, -0.5], [0.0, 0.0], 0.05, [1.0, 20.0])
    assert fp.deviation_rad == pytest.approx(0.5)
    assert fp.lead_s == pytest.approx(0.05)
    assert fp.velocity_rad_s == pytest.approx(10.0)  # 0.5 rad in 50 ms
    # joint 0: 2 rad/s of 1 -> 2.0; joint 1: 10 of 20 -> 0.5
    assert fp.velocity_fraction == pytest.approx(2.0)
    assert fp.over_limit and fp.accepted


def test_a_first_point_due_at_or_before_receipt_uses_the_floor():
    fp = first_point([0.01], [0.0], 0.0, [1.0])
    assert fp.lead_s == LEAD_FLOOR_S
    assert fp.velocity_rad_s == pytest.approx(0.01 / LEAD_FLOOR_S)
    assert first_point([0.01], [0.0], -1.0, [1.0]).lead_s == LEAD_FLOOR_S
    assert first_point([0.01], [0.0], math.nan, [1.0]).lead_s == LEAD_FLOOR_S


def test_lengths_must_match():
    with pytest.raises(ValueError):
        first_point([0.0, 0.0], [0.0], 0.1, [1.0, 1.0])


def test_lead_counts_from_the_stamp_when_there_is_one():
    assert lead_time(0.1, now_s=5.0) == pytest.approx(0.1)
    assert lead_time(0.1, now_s=5.0, stamp_s=5.02) == pytest.approx(0.12)
    assert lead_time(0.1, now_s=5.0, stamp_s=4.95) == pytest.approx(0.05)


def test_trajectory_first_point_reorders_and_handles_partial_goals():
    prof = load_profile("fr3")
    q = np.array(prof.home)
    names = list(prof.joint_names)
    first = q.copy()
    first[3] += 0.2
    # message order reversed: still compared joint by joint
    fp = trajectory_first_point(prof, names[::-1], [(0.1, first[::-1], None)], q)
    assert fp.deviation_rad == pytest.approx(0.2)
    assert fp.velocity_fraction == pytest.approx(2.0 / prof.limits.velocity[3])
    # partial goal naming joint 4 only
    fp = trajectory_first_point(prof, [names[3]], [(0.1, [first[3]], None)], q)
    assert fp.deviation_rad == pytest.approx(0.2)
    # unreadable messages give no record
    assert trajectory_first_point(prof, names, [], q) is None
    assert trajectory_first_point(prof, names, [(0.1, [0.0], None)], q) is None
    assert trajectory_first_point(prof, ["nope"] * 7, [(0.1, first, None)], q) is None
    bad = first.copy()
    bad[0] = math.nan
    assert trajectory_first_point(prof, names, [(0.1, bad, None)], q) is None


def test_stats_percentiles_counts_and_json():
    st = FirstPointStats()
    assert st.summary()["count"] == 0 and st.summary()["velocity_fraction"]["p99"] is None
    for i in range(100):
        # deviation i mrad at 0.1 s: velocity i/100 rad/s, limit 1 -> fraction i/100
        st.add(first_point([i * 1e-3], [0.0], 0.1, [1.0], accepted=i % 10 != 0))
    st.add(first_point([0.5], [0.0], 0.1, [1.0]))  # 5x the limit
    st.add(None)  # an unreadable message is not a record
    s = st.summary()
    assert s["count"] == 101 and s["rejected"] == 10 and s["over_limit"] == 1
    assert s["deviation_rad"]["max"] == pytest.approx(0.5)
    assert s["velocity_fraction"]["p50"] == pytest.approx(0.5, abs=0.011)
    assert s["velocity_fraction"]["max"] == pytest.approx(5.0)
    assert s["min_lead_s"] == pytest.approx(0.1)
    json.dumps(s)  # plain JSON
    st.reset()
    assert st.summary()["count"] == 0


def test_pooled_matches_the_exact_percentiles_within_a_bin():
    rng = np.random.default_rng(0)
    values = rng.lognormal(-3, 1, size=(5, 300))
    subs = []
    for ep in values:
        st = FirstPointStats()
        for x in ep:
            st.add(first_point([x * 0.1], [0.0], 0.1, [1.0]))
        subs.append(st.summary())
    p = pooled(subs + [None, {"count": 0}])
    allv = values.reshape(-1)
    assert p["count"] == allv.size and p["episodes"] == 5
    for q, key in ((50, "p50"), (99, "p99")):
        exact = np.percentile(allv, q)
        assert exact * 0.98 <= p["velocity_fraction"][key] <= exact * 1.13
    assert p["velocity_fraction"]["max"] == pytest.approx(allv.max(), rel=1e-3)
    assert pooled([None, {"count": 0}]) is None
    # pooling a pooled summary is stable
    assert pooled([p])["velocity_fraction"]["p99"] == p["velocity_fraction"]["p99"]
    assert "over it" in describe(p) and describe(None) == "no trajectories"


def test_keep_bounds_the_exact_window_but_not_the_counts():
    st = FirstPointStats(keep=10)
    for i in range(50):
        st.add(first_point([float(i)], [0.0], 1.0, [100.0]))
    s = st.summary()
    assert s["count"] == 50
    assert s["deviation_rad"]["p50"] == pytest.approx(44.5)  # over the newest 10
    assert s["deviation_rad"]["max"] == pytest.approx(49.0)
    assert sum(s["hist"]["deviation_rad"].values()) == 50
