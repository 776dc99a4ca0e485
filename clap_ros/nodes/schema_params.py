"""ROS side of the parameter schemas (clap_ros.runtime.params): declare a node's parameters from
its schema, with descriptors that ``ros2 param describe`` shows (description, unit, allowed
range as FloatingPointRange / IntegerRange, choices), and read them back into the dataclass.

A value outside its range is refused at start-up with ``ParameterError`` naming the parameter and
the allowed range (``run_node`` prints that one line and exits 2).
"""

from __future__ import annotations

from typing import Iterable, Type, TypeVar

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from clap_ros.nodes.common import ParameterError
from clap_ros.runtime.params import Param, ParamError, Schema

S = TypeVar("S", bound=Schema)


def descriptor(p: Param) -> ParameterDescriptor:
    """The ParameterDescriptor for one schema parameter."""
    # the range / choices go in additional_constraints and the ranges (shown next to it)
    unit = " [%s]" % p.unit if p.unit else ""
    d = ParameterDescriptor(description=p.description + unit, read_only=p.read_only)
    k = p.kind
    if p.choices:
        d.additional_constraints = p.allowed()
    elif k in (int, float) and (p.low is not None or p.high is not None):
        d.additional_constraints = p.allowed()
        if p.low is not None and p.high is not None:
            if k is int:
                d.integer_range = [
                    IntegerRange(from_value=int(p.low), to_value=int(p.high), step=0)
                ]
            else:
                d.floating_point_range = [
                    FloatingPointRange(from_value=float(p.low), to_value=float(p.high), step=0.0)
                ]
    # `-p rate:=15` arrives as an integer: a float parameter takes it (Param.check converts).
    d.dynamic_typing = k is float
    return d


def declare_params(node, schema: Type[S], skip: Iterable[str] = ()) -> S:
    """Declare every parameter of ``schema`` on ``node`` (except ``skip``, declared elsewhere,
    whose values stay at their defaults here) and return the validated dataclass."""
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    skip = set(skip)
    values = {}
    for p in schema.specs():
        if p.name in skip:
            continue
        try:
            values[p.name] = node.declare_parameter(p.name, p.default, descriptor(p)).value
        except (InvalidParameterValueException, InvalidParameterTypeException):
            # rclpy's range message does not say what is allowed in our terms: re-check the
            # override ourselves for a message naming the parameter and its range.
            raise ParameterError(_refusal(node, p)) from None
    try:
        return schema.from_mapping(values)
    except ParamError as e:
        raise ParameterError(str(e)) from None


def _refusal(node, p: Param) -> str:
    """The message for an override rclpy refused (out of its range, or the wrong type)."""
    value = None
    try:
        overrides = getattr(node, "_parameter_overrides", {}) or {}
        if p.name in overrides:
            value = overrides[p.name].value
    except Exception:  # an rclpy internal changed: the generic message still names the range
        value = None
    if value is not None:
        try:
            p.check(value)
        except ParamError as e:
            return str(e)
    return "parameter '%s': refused (%s allowed)" % (p.name, p.allowed())
