"""Absolute-deadline pacing for the high-rate command loops.

Sleeping for the whole remaining time overshoots by the scheduler's wake-up latency, so the loop
sleeps until ``spin_s`` before the deadline and busy-waits the rest: the period error then stays
near the clock's resolution on an idle core, at the cost of ``spin_s`` of CPU per tick.
"""

import time


def sleep_until(deadline: float, spin_s: float, clock=time.perf_counter) -> float:
    """Wait until ``clock() >= deadline``; return the wake-up time."""
    rest = deadline - clock() - spin_s
    if rest > 0:
        time.sleep(rest)
    now = clock()
    while now < deadline:
        now = clock()
    return now
