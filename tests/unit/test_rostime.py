"""clap_ros.rostime: the one sec/nanosec conversion, exact for nanoseconds, rounded for seconds."""

import math
import types

import numpy as np
import pytest

from clap_ros import rostime
from clap_ros.data import bags


def _t(sec, nanosec):
    return types.SimpleNamespace(sec=sec, nanosec=nanosec)


def test_ns_sec_nanosec_is_exact_for_epoch_stamps():
    # 2026 epoch stamps in ns are beyond float64's integer precision: no float on the way.
    ns = 1_796_000_000_123_456_789
    assert rostime.ns_sec_nanosec(ns) == (1_796_000_000, 123_456_789)
    assert rostime.stamp_to_ns(_t(*rostime.ns_sec_nanosec(ns))) == ns
    assert rostime.ns_sec_nanosec(np.int64(ns)) == (1_796_000_000, 123_456_789)


def test_sec_nanosec_rounds_to_the_nanosecond_and_keeps_nanosec_in_range():
    assert rostime.sec_nanosec(1.5) == (1, 500_000_000)
    assert rostime.sec_nanosec(2.000000001) == (2, 1)
    # 0.9999999999 s rounds up to a whole second, not to (0, 1_000_000_000)
    assert rostime.sec_nanosec(0.9999999999) == (1, 0)
    # negative times keep nanosec in [0, 1e9): -0.25 s = -1 s + 0.75 s
    assert rostime.sec_nanosec(-0.25) == (-1, 750_000_000)
    for t in np.linspace(-3.0, 3.0, 61):
        sec, nsec = rostime.sec_nanosec(float(t))
        assert 0 <= nsec < rostime.NS_PER_S
        assert math.isclose(sec + nsec * 1e-9, float(t), abs_tol=1e-9)


def test_stamp_to_s_takes_messages_and_plain_or_numpy_numbers():
    assert rostime.stamp_to_s(_t(3, 250_000_000)) == pytest.approx(3.25)
    assert rostime.stamp_to_s(2) == 2.0
    assert rostime.stamp_to_s(0.125) == 0.125
    assert rostime.stamp_to_s(np.float32(0.5)) == 0.5
    assert rostime.stamp_to_s(np.int64(4)) == 4.0
    with pytest.raises(AttributeError):
        rostime.stamp_to_s("1.0")


def test_epoch_seconds_keep_their_float_precision():
    t = 1_796_000_000.123456789  # a float: the nearest double is 1796000000.1234567165...
    sec, nsec = rostime.sec_nanosec(t)
    # what the double holds, to the nanosecond (round(t * 1e9) would give ...768)
    assert (sec, nsec) == (1_796_000_000, 123_456_717)
    assert rostime.s_to_ns(t) == sec * rostime.NS_PER_S + nsec
    with pytest.raises(ValueError):
        rostime.sec_nanosec(float("nan"))


def test_ns_and_s_round_trip():
    assert rostime.s_to_ns(1.25) == 1_250_000_000
    assert rostime.s_to_ns(1e-9) == 1
    assert rostime.ns_to_s(1_250_000_000) == pytest.approx(1.25)
    for ns in (0, 1, 999_999_999, 123_456_789_012):
        assert rostime.s_to_ns(rostime.ns_to_s(ns)) == ns


def test_rosbags_builders_delegate_to_rostime():
    ns = 1_796_000_000_123_456_789
    t = bags.stamp(ns)
    assert (t.sec, t.nanosec) == rostime.ns_sec_nanosec(ns)
    d = bags.duration(0.9999999999)
    assert (d.sec, d.nanosec) == (1, 0)
    assert bags.stamp_to_ns is rostime.stamp_to_ns


def test_rclpy_messages():
    pytest.importorskip("builtin_interfaces.msg")
    from builtin_interfaces.msg import Duration, Time

    t = rostime.time_msg(12.5)
    assert isinstance(t, Time) and (t.sec, t.nanosec) == (12, 500_000_000)
    d = rostime.duration_msg(0.1)
    assert isinstance(d, Duration) and rostime.stamp_to_ns(d) == 100_000_000
    assert rostime.stamp_to_s(d) == pytest.approx(0.1)
