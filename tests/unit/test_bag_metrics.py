"""clap_ros.eval.bag_metrics on synthetic signals with known answers."""

import numpy as np
import pytest

from clap_ros.eval import bag_metrics as M


def test_chunk_errors_known_offsets_per_joint_and_step():
    k, h, j = 3, 4, 2
    ref = np.zeros((k, h, j))
    pred = np.zeros((k, h, j))
    pred[..., 0] = 0.1  # joint 0 off by 0.1 everywhere
    pred[..., 1] = np.arange(h) * 0.2  # joint 1 error grows with the horizon step
    r = M.chunk_errors(pred, ref, names=["a", "b"])
    assert r["steps"] == k * h
    assert r["mae_per_joint"][0] == pytest.approx(0.1)
    assert r["rmse_per_joint"][0] == pytest.approx(0.1)
    assert r["mae_per_joint"][1] == pytest.approx(np.mean([0, 0.2, 0.4, 0.6]))
    assert r["rmse_per_joint"][1] == pytest.approx(np.sqrt(np.mean([0, 0.04, 0.16, 0.36])))
    assert r["mae_per_step"] == pytest.approx([0.05, 0.15, 0.25, 0.35])
    assert r["max_abs"] == pytest.approx(0.6)


def test_chunk_errors_ignores_invalid_steps_and_handles_none_valid():
    pred = np.ones((2, 3, 1))
    ref = np.zeros((2, 3, 1))
    pred[1, 2] = 100.0  # outside the reference: must not count
    valid = np.ones((2, 3), bool)
    valid[1, 2] = False
    r = M.chunk_errors(pred, ref, valid)
    assert r["mae"] == pytest.approx(1.0) and r["steps"] == 5
    assert r["mae_per_step"][2] == pytest.approx(1.0)
    empty = M.chunk_errors(pred, ref, np.zeros((2, 3), bool))
    assert empty["mae"] is None and empty["mae_per_step"] == [None, None, None]
    with pytest.raises(ValueError):
        M.chunk_errors(pred, ref[:, :2])


def test_gripper_agreement_counts_same_side_and_switches():
    ref = np.array([1, 1, 1, 0, 0, 0, 0, 1.0])
    pred = np.array([0.9, 0.8, 0.2, 0.1, 0.0, 0.6, 0.4, 0.7])
    r = M.gripper_agreement(pred, ref)
    assert r["samples"] == 8
    assert r["agreement"] == pytest.approx(6 / 8)  # index 2 and 5 disagree
    assert r["switches_ref"] == 2 and r["switches_pred"] == 4
    assert M.gripper_agreement([], [])["agreement"] is None


def test_smoothness_of_a_cubic_has_known_derivatives():
    dt = 0.001
    t = np.arange(0, 1.0 + dt / 2, dt)
    q = np.stack([t**3, 2 * t], axis=1)  # jerk 6 on joint 0; constant velocity 2 on joint 1
    s = M.smoothness(t, q)
    assert s["jerk"]["max_per_joint"][0] == pytest.approx(6.0, rel=1e-3)
    assert s["jerk"]["max_per_joint"][1] == pytest.approx(0.0, abs=1e-6)
    assert s["velocity"]["max_per_joint"][1] == pytest.approx(2.0)
    assert s["velocity"]["max_per_joint"][0] == pytest.approx(3.0, rel=1e-2)  # 3 t^2 at t=1
    assert s["acceleration"]["max"] == pytest.approx(6.0, rel=1e-2)
    assert s["jerk"]["max"] == pytest.approx(6.0, rel=1e-3)
    with pytest.raises(ValueError):
        M.derivatives(np.array([0.0, 0.1, 0.3]), np.zeros((3, 1)))


def test_discontinuities_distribution_rate_tracking():
    before = np.array([[0.0, 0.0], [1.0, 1.0]])
    after = np.array([[0.1, -0.3], [1.0, 1.05]])
    d = M.discontinuities(before, after)
    assert d["boundaries"] == 2 and d["max"] == pytest.approx(0.3)
    assert d["mean"] == pytest.approx((0.3 + 0.05) / 2)
    assert M.discontinuities(np.zeros((0, 2)), np.zeros((0, 2)))["max"] is None
    lat = M.distribution([0.01, 0.02, 0.03, None, float("nan")], 1e3)
    assert (
        lat["count"] == 3
        and lat["p50"] == pytest.approx(20.0)
        and lat["max"] == pytest.approx(30.0)
    )
    assert M.achieved_rate(np.arange(11) * 0.1) == pytest.approx(10.0)
    assert M.achieved_rate([1.0]) is None
    e = M.tracking_errors(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 0.0], [0.0, 2.0]]))
    assert e["mae_per_joint"] == pytest.approx([1.0, 1.0])
    assert e["rmse_per_joint"] == pytest.approx([1.0, np.sqrt(2.0)])


def test_aggregate_means_values_and_sums_counts():
    bags = [
        {"chunk": {"mae": 0.1}, "counts": {"chunks_accepted": 3, "watchdog_stops": 1}},
        {"chunk": {"mae": 0.3}, "counts": {"chunks_accepted": 5, "watchdog_stops": 0}},
        {"chunk": None, "counts": {"chunks_accepted": 2}},
    ]
    a = M.aggregate(bags)
    assert a["bags"] == 3
    assert a["chunk MAE"] == pytest.approx(0.2)
    assert a["chunks"] == 10 and a["watchdog stops"] == 1
    assert a["latency p50"] is None
