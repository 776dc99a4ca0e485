"""ROS time and stamp conversion: the one place for ``sec``/``nanosec`` arithmetic.

Works on any object with ``sec`` and ``nanosec`` (rclpy messages, rosbags messages,
``builtin_interfaces`` Time or Duration) and builds rclpy messages only when asked, so the
ROS-free cores can import it without rclpy.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Tuple

NS_PER_S = 1_000_000_000


def ns_sec_nanosec(ns: int) -> Tuple[int, int]:
    """Nanoseconds -> (sec, nanosec), nanosec in [0, 1e9); exact (no float on the way)."""
    ns = int(ns)
    return ns // NS_PER_S, ns % NS_PER_S


def sec_nanosec(t: float) -> Tuple[int, int]:
    """Seconds -> (sec, nanosec), rounded to the nanosecond, nanosec in [0, 1e9).

    Whole seconds are split off first: ``t - floor(t)`` is exact, so an epoch time keeps all the
    precision its float has (``t * 1e9`` would round at ~100 ns for 2026 stamps)."""
    t = float(t)
    if not math.isfinite(t):
        raise ValueError("time must be finite, got %r" % t)
    sec = math.floor(t)
    nsec = int(round((t - sec) * 1e9))
    if nsec >= NS_PER_S:
        sec, nsec = sec + 1, nsec - NS_PER_S
    return int(sec), nsec


def stamp_to_ns(t: Any) -> int:
    """Nanoseconds from a Time/Duration-like object (``sec``, ``nanosec``)."""
    return int(t.sec) * NS_PER_S + int(t.nanosec)


def stamp_to_s(t: Any) -> float:
    """Seconds from a Time/Duration-like object, or a plain (also numpy) number as is."""
    if isinstance(t, numbers.Real):
        return float(t)
    return float(t.sec) + float(t.nanosec) * 1e-9


def ns_to_s(ns: int) -> float:
    return int(ns) * 1e-9


def s_to_ns(t: float) -> int:
    sec, nsec = sec_nanosec(t)
    return sec * NS_PER_S + nsec


def time_msg(t: float) -> Any:
    """rclpy ``builtin_interfaces/Time`` from seconds."""
    from builtin_interfaces.msg import Time

    sec, nsec = sec_nanosec(t)
    return Time(sec=sec, nanosec=nsec)


def duration_msg(t: float) -> Any:
    """rclpy ``builtin_interfaces/Duration`` from seconds."""
    from builtin_interfaces.msg import Duration

    sec, nsec = sec_nanosec(t)
    return Duration(sec=sec, nanosec=nsec)
