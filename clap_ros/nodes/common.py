"""Helpers every clap_ros node shares: QoS chosen on purpose, declared parameters, clean exits.

Only imported by node processes (it imports rclpy); the logic the nodes wrap lives elsewhere.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable, Dict, Optional, Sequence

import rclpy
from rcl_interfaces.msg import IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Cameras: best effort, keep last 5 (rclpy's sensor-data profile), as real camera drivers publish.
SENSOR_QOS = qos_profile_sensor_data
# Latched facts (instruction, sim status): a late subscriber still gets the latest one.
LATCHED_QOS = QoSProfile(
    depth=1,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# Commands and joint states: reliable, volatile, like the ros2_control controllers' topics.
COMMAND_QOS = QoSProfile(
    depth=10,
    history=HistoryPolicy.KEEP_LAST,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
STATE_QOS = COMMAND_QOS
# /clock like rclcpp::ClockQoS, which rclpy's TimeSource subscribes with: best effort, last 1.
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)


class ParameterError(ValueError):
    """A node parameter has a value the node cannot work with."""


def declare(
    node: Node,
    name: str,
    default: Any,
    description: str,
    choices: Optional[Sequence[str]] = None,
    min_value: Optional[float] = None,
    max_value: Optional[float] = None,
    read_only: bool = False,
) -> Any:
    """Declare a parameter with a description (shown by `ros2 param describe`) and return its
    value, validated against ``choices`` / ``min_value`` / ``max_value``."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    desc = ParameterDescriptor(description=description, read_only=read_only)
    if choices:
        desc.additional_constraints = "one of: %s" % ", ".join(choices)
    is_float = isinstance(default, float)
    if min_value is not None and max_value is not None and not isinstance(default, bool):
        if isinstance(default, int):
            desc.integer_range = [
                IntegerRange(from_value=int(min_value), to_value=int(max_value), step=0)
            ]
        else:
            desc.additional_constraints = "%g .. %g" % (min_value, max_value)
    # `-p rate:=15` arrives as an integer; a float parameter takes it (checked below) instead of
    # failing with a type error.
    desc.dynamic_typing = is_float
    try:
        value = node.declare_parameter(name, default, desc).value
    except (InvalidParameterValueException, InvalidParameterTypeException) as e:
        raise ParameterError("parameter '%s': %s" % (name, e)) from None
    if is_float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParameterError("parameter '%s' = %r: must be a number" % (name, value))
        value = float(value)
    check_value(name, value, choices, min_value, max_value)
    return value


def declare_robot(node: Node, default: str = "fr3", read_only: bool = False):
    """Declare the ``robot`` parameter and load its profile: (name, RobotProfile). Every node
    takes its robot facts from here, so a wrong name fails the same way everywhere."""
    from clap_ros.robots import ProfileError, load_profile

    robot = declare(
        node,
        "robot",
        default,
        "robot profile: fr3, panda, ur5e or a profile YAML path",
        read_only=read_only,
    )
    try:
        return robot, load_profile(robot)
    except (ProfileError, OSError, ValueError) as e:
        raise ParameterError("parameter 'robot' = %r: %s" % (robot, e)) from None


def check_value(
    name: str,
    value: Any,
    choices: Optional[Sequence[str]] = None,
    min_value: Optional[float] = None,
    max_value: Optional[float] = None,
) -> None:
    if choices is not None and value not in choices:
        raise ParameterError(
            "parameter '%s' = %r: must be one of %s" % (name, value, ", ".join(map(str, choices)))
        )
    if min_value is not None and value < min_value:
        raise ParameterError("parameter '%s' = %r: must be >= %s" % (name, value, min_value))
    if max_value is not None and value > max_value:
        raise ParameterError("parameter '%s' = %r: must be <= %s" % (name, value, max_value))


class RateLimitedLog:
    """Log a repeating problem at most once per ``period_s`` per key, counting what was skipped,
    so a 1 kHz stream of bad commands cannot flood the log."""

    def __init__(self, logger, period_s: float = 1.0, clock: Callable[[], float] = None):
        import time

        self._logger = logger
        self._period = period_s
        self._clock = clock or time.monotonic
        self._last: Dict[str, float] = {}
        self._skipped: Dict[str, int] = {}

    def __call__(self, key: str, text: str, level: str = "warning") -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return False
        skipped = self._skipped.pop(key, 0)
        self._last[key] = now
        if skipped:
            text += " (%d similar messages suppressed)" % skipped
        # rclpy fixes one severity per call site, so each level needs its own call line.
        if level == "error":
            self._logger.error(text)
        elif level == "info":
            self._logger.info(text)
        elif level == "debug":
            self._logger.debug(text)
        else:
            self._logger.warning(text)
        return True


def stamp_from_s(t: float):
    """builtin_interfaces/Time from seconds (clap_ros.rostime, the one conversion)."""
    from clap_ros.rostime import time_msg

    return time_msg(t)


def duration_from_s(t: float):
    """builtin_interfaces/Duration from seconds (clap_ros.rostime, the one conversion)."""
    from clap_ros.rostime import duration_msg

    return duration_msg(t)


class _StopRequested(BaseException):
    """Raised (once) by run_node's signal handler to leave construction or a node's own spin loop;
    never escapes run_node.
    A BaseException, so a callback's ``except Exception`` cannot swallow it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _StopSignals:
    """SIGINT / SIGTERM handling for one node process.

    rclpy's own handlers (SignalHandlerOptions.ALL) shut the context down at the first signal, so
    a node could no longer publish its last commands (the action node's smooth stop), and they
    re-raise KeyboardInterrupt wherever the main thread is: a second Ctrl-C (a terminal signals
    the whole process group and ros2 launch forwards one more) then lands in ``shutdown()`` /
    ``thread.join`` as a traceback. Here the first signal ends run_node's spin loop (recorded, seen
    within SPIN_PERIOD_S) or, during construction or a node's own spin, raises _StopRequested;
    later ones while cleaning up are noted and ignored; a third means the user (or launch's
    SIGTERM escalation) will not wait any longer, and the process exits at once.
    """

    FORCE_AFTER = 3

    def __init__(self):
        self.received: list = []
        self.raising = True

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.received.append(signum)
        if len(self.received) >= self.FORCE_AFTER:
            os.write(
                2, b"[clap_ros] %d stop signals: exiting without cleanup\n" % len(self.received)
            )
            os._exit(128 + signum)
        if self.raising and len(self.received) == 1:
            self.raising = False
            raise _StopRequested(signum)


SPIN_PERIOD_S = 0.1  # how soon a stop signal is acted on while the executor waits


def _spin(node: Node, stops: "_StopSignals") -> None:
    """rclpy.spin without rclpy's signal handlers, until a stop signal: the executor returns to
    Python at least every SPIN_PERIOD_S, so the handler runs (a Python handler cannot run inside
    the C wait) and the loop sees what it recorded. Nothing is raised into the executor."""
    executor = rclpy.get_global_executor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not stops.received:
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    finally:
        executor.remove_node(node)


def run_node(
    make_node: Callable[[], Node],
    spin: Optional[Callable[[Node], Optional[int]]] = None,
    args: Optional[Sequence[str]] = None,
) -> int:
    """Init rclpy, build the node, spin until SIGINT/SIGTERM (or ``spin`` returns), clean up.

    A ParameterError at construction prints one line and exits 2 rather than a traceback; the
    node's ``shutdown()`` (if any) runs on every exit path, while the context is still valid (so
    it may publish, e.g. the action node's smooth stop), then the node is destroyed. One or two
    SIGINT / SIGTERM give exit code 0 and no traceback (see _StopSignals).
    """
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions

    argv = list(args) if args is not None else list(sys.argv)
    user_args = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    want_help = any(a in ("-h", "--help") for a in user_args[1:])
    stops = _StopSignals()
    stops.install()
    made: list = []  # the node, once built
    name = ["node"]  # its name (not readable from the node after destroy_node)
    cleaned: list = []  # set once shutdown()/destroy_node() ran
    code = 0

    def cleanup() -> None:
        stops.raising = False  # from here on a signal only counts: cleanup must finish
        if cleaned:
            return
        cleaned.append(True)
        if made:
            stop = getattr(made[0], "shutdown", None)
            if callable(stop):
                stop()
            made[0].destroy_node()
        rclpy.try_shutdown()

    def node_code() -> int:
        return int(getattr(made[0], "exit_code", 0) or 0) if made else 0

    try:
        try:
            rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
            try:
                made.append(make_node())
                name[0] = made[0].get_name()
            except ParameterError as e:
                print("error: %s" % e, file=sys.stderr)
                return 2
            node = made[0]
            if want_help:
                print_node_help(node, make_node)
                return 0
            if spin is not None:
                # A node's own spin loop only checks rclpy.ok(): the first signal raises out of it.
                code = int(spin(node) or 0)
            else:
                stops.raising = False  # the loop polls stops.received instead
                _spin(node, stops)
            code = code or node_code()
        except (_StopRequested, KeyboardInterrupt, ExternalShutdownException):
            code = node_code()
        except Exception:
            # A signal raised inside a C++ call (pybind11 converting an argument) comes back as
            # another exception (RuntimeError "Unable to convert call argument"); and another
            # process may shut the context down between two executor steps (RCLError "context is
            # not valid"). Both are a stop, not a failure.
            if not stops.received and rclpy.ok():
                raise
            code = node_code()
        finally:
            cleanup()
    except _StopRequested:
        # The first signal landed between the guarded steps above (an except clause, or before
        # the cleanup began): still a clean stop, with the cleanup done exactly once.
        cleanup()
        code = node_code()
    # A signal that arrives after a fast cleanup, while the interpreter exits, is ignored: Python
    # resets a Python-level handler to SIG_DFL when it finalises (the process would then die by
    # SIGINT, exit -2), but leaves SIG_IGN alone. A hung exit is still ended by launch's SIGKILL.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if stops.received:
        print(
            "[%s] stopped by %s" % (name[0], signal.Signals(stops.received[0]).name),
            file=sys.stderr,
        )
    return code


def ignore_sigpipe() -> None:
    # A parent that closed our log pipe must not kill us mid-cleanup.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def print_node_help(node: Node, make_node) -> None:
    """`<node> --help`: the node's purpose and its declared parameters with their descriptions and
    current values, read from the node itself so the text cannot drift from the code."""
    import inspect

    doc = inspect.getmodule(make_node).__doc__ or ""
    print(doc.strip())
    print(
        "\nusage: ros2 run clap_ros %s [--ros-args -p NAME:=VALUE ...]\n\nparameters:"
        % node.get_name()
    )
    names = sorted(node.list_parameters([], 0).names)
    for name, desc in zip(names, node.describe_parameters(names)):
        value = node.get_parameter(name).value
        extra = (" [%s]" % desc.additional_constraints) if desc.additional_constraints else ""
        print("  %-40s %-14r %s%s" % (name, value, desc.description, extra))
