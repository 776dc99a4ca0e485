"""Task registry: objects, per-seed layout, instruction, success predicate and the embodiment-free
expert waypoints (TCP poses + gripper) of each task.

Positions are in the world frame (table top at z = 0, workspace in front of the robot along +x).
Waypoints are Cartesian, so the arm expert (IK) and the floating-hand renderer share them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Dict, List, Protocol, Sequence, Tuple

import numpy as np

from clap_ros.sim.scene import (
    BOWL_BOTTOM,
    BOWL_INNER_RADIUS,
    BOWL_WALL_HEIGHT,
    CUBE_HALF,
    GOAL_HALF,
)


class TaskState(Protocol):
    """What a task's success predicate and goal distance read from a world (SimWorld has it);
    a protocol, so the task registry does not import the world that imports it."""

    def tcp_position(self) -> np.ndarray: ...

    def object_position(self, role: str) -> np.ndarray: ...

    def hand_touches(self, role: str) -> bool: ...


# Where task objects are placed (world x/y, m): in front of the base, reachable by every arm.
WORKSPACE = (0.38, 0.62, -0.18, 0.18)
GRASP_Z = 0.012  # TCP (fingertip centre) height when grasping a cube on the table
PUSH_Z = 0.016  # TCP height while pushing: below the cube centre, above the table
HOVER = 0.12  # approach height above an object
CARRY_Z = 0.17  # TCP height while carrying a cube


@dataclass
class Layout:
    """Object placement of one episode: planar poses (x, y, yaw) and 3-D points."""

    poses: Dict[str, Tuple[float, float, float]] = field(default_factory=dict)
    points: Dict[str, Tuple[float, float, float]] = field(default_factory=dict)

    def xy(self, role: str) -> np.ndarray:
        return np.array(self.poses[role][:2])

    def yaw(self, role: str) -> float:
        return float(self.poses[role][2])

    def as_dict(self) -> dict:
        return {
            "poses": {k: list(v) for k, v in self.poses.items()},
            "points": {k: list(v) for k, v in self.points.items()},
        }


@dataclass(frozen=True)
class Waypoint:
    """Move the TCP to ``pos`` with gripper ``yaw`` (TCP pointing down), gripper opening at the end.

    ``linear``: the TCP follows a straight line (sampled densely for IK). ``gripper_only``: the
    arm holds still while the gripper moves to ``gripper``. ``min_duration`` lower-bounds the time.
    """

    pos: Tuple[float, float, float]
    yaw: float
    gripper: float
    linear: bool = False
    gripper_only: bool = False
    min_duration: float = 0.0
    label: str = ""


class Task(ABC):
    """Base of every task. Subclasses set the class attributes and implement the four methods."""

    name: str = ""
    action_category: str = ""
    objects: Tuple[Tuple[str, str], ...] = ()  # (role, kind)
    color_roles: Tuple[Tuple[str, str], ...] = ()  # (role, default colour name)

    @abstractmethod
    def sample_layout(self, rng: np.random.Generator, home_tcp: np.ndarray) -> Layout:
        """Random object placement; ``home_tcp`` is where the TCP starts (world xyz)."""

    @abstractmethod
    def instruction(self, colors: Dict[str, str]) -> str:
        """The language instruction, naming objects by their colours (role -> colour name)."""

    @abstractmethod
    def success(self, world: TaskState) -> bool:
        """Whether the task is achieved in the world's current state."""

    @abstractmethod
    def waypoints(self, layout: Layout, home_yaw: float) -> List[Waypoint]:
        """Expert TCP waypoints for this layout; ``home_yaw`` is the gripper yaw at reset."""

    @abstractmethod
    def goal_distance(self, world: TaskState) -> float:
        """Metres from what the task moves (the TCP, or the object) to where success puts it.

        A graded companion of ``success``: evaluations report how close an episode got, which
        separates policies that all fail (0 % says nothing about which one came closer)."""


TASKS: Dict[str, Task] = {}


def register_task(cls: type) -> type:
    inst = cls()
    TASKS[inst.name] = inst
    return cls


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError("unknown task '%s': choose one of %s" % (name, ", ".join(TASKS)))
    return TASKS[name]


# --- helpers ---------------------------------------------------------------------------------


def _sample_xy(
    rng: np.random.Generator,
    others: Sequence[np.ndarray],
    min_dist: float,
    area: Tuple[float, float, float, float] = WORKSPACE,
) -> np.ndarray:
    for _ in range(1000):
        p = np.array([rng.uniform(area[0], area[1]), rng.uniform(area[2], area[3])])
        if all(np.linalg.norm(p - o) >= min_dist for o in others):
            return p
    raise RuntimeError("could not place an object %.2f m from the others" % min_dist)


def wrap_to(angle: float, reference: float, period: float) -> float:
    """The angle equivalent to ``angle`` modulo ``period`` that is closest to ``reference``."""
    return reference + ((angle - reference + period / 2) % period) - period / 2


def _pick_waypoints(
    cube_xy: np.ndarray, cube_yaw: float, home_yaw: float
) -> Tuple[float, List[Waypoint]]:
    # A cube looks the same every 90 degrees: grasp at the yaw nearest the home wrist angle.
    yaw = wrap_to(cube_yaw, home_yaw, math.pi / 2)
    x, y = float(cube_xy[0]), float(cube_xy[1])
    return yaw, [
        Waypoint((x, y, GRASP_Z + HOVER), yaw, 1.0, label="above_object"),
        Waypoint((x, y, GRASP_Z), yaw, 1.0, linear=True, min_duration=1.2, label="descend"),
        Waypoint((x, y, GRASP_Z), yaw, 0.0, gripper_only=True, min_duration=0.8, label="grasp"),
        Waypoint((x, y, CARRY_Z), yaw, 0.0, linear=True, min_duration=1.2, label="lift"),
    ]


def _place_waypoints(xy: np.ndarray, yaw: float, release_z: float) -> List[Waypoint]:
    x, y = float(xy[0]), float(xy[1])
    return [
        Waypoint((x, y, CARRY_Z), yaw, 0.0, label="carry"),
        Waypoint((x, y, release_z), yaw, 0.0, linear=True, min_duration=1.2, label="lower"),
        Waypoint((x, y, release_z), yaw, 1.0, gripper_only=True, min_duration=0.6, label="release"),
        Waypoint(
            (x, y, release_z + 0.12), yaw, 1.0, linear=True, min_duration=1.0, label="retreat"
        ),
    ]


# --- tasks -----------------------------------------------------------------------------------


@register_task
class ReachTask(Task):
    name = "reach"
    action_category = "reach"
    objects = (("target", "target"),)
    color_roles = (("target", "red"),)
    tolerance = 0.03

    def sample_layout(self, rng, home_tcp):
        for _ in range(1000):
            p = np.array([rng.uniform(0.38, 0.62), rng.uniform(-0.2, 0.2), rng.uniform(0.06, 0.25)])
            if np.linalg.norm(p - home_tcp) > 0.12:
                return Layout(points={"target": tuple(float(v) for v in p)})
        raise RuntimeError("could not place the reach target")

    def instruction(self, colors):
        return "move the gripper to the %s ball" % colors["target"]

    def success(self, world):
        return bool(
            np.linalg.norm(world.tcp_position() - world.object_position("target")) < self.tolerance
        )

    def goal_distance(self, world):
        return float(np.linalg.norm(world.tcp_position() - world.object_position("target")))

    def waypoints(self, layout, home_yaw):
        p = layout.points["target"]
        return [Waypoint(p, home_yaw, 1.0, min_duration=1.5, label="reach")]


@register_task
class PushTask(Task):
    name = "push"
    action_category = "push"
    objects = (("cube", "cube"), ("goal", "goal"))
    color_roles = (("cube", "red"), ("goal", "green"))
    # The cube centre must be well inside the goal square, not just touching it.
    tolerance = 0.7 * GOAL_HALF

    def sample_layout(self, rng, home_tcp):
        for _ in range(1000):
            c = _sample_xy(rng, [], 0.0, (0.38, 0.6, -0.16, 0.16))
            yaw = float(rng.uniform(-math.pi / 4, math.pi / 4))
            # Push along a face normal: a flat face against the pusher keeps the cube from turning.
            face = yaw + int(rng.integers(4)) * math.pi / 2
            dist = float(rng.uniform(0.1, 0.15))
            u = np.array([math.cos(face), math.sin(face)])
            g = c + dist * u
            start = c - u * 0.09
            if (
                WORKSPACE[0] - 0.04 <= g[0] <= WORKSPACE[1] + 0.06
                and abs(g[1]) <= 0.22
                and start[0] >= 0.3
                and abs(start[1]) <= 0.26
            ):
                return Layout(
                    poses={
                        "cube": (float(c[0]), float(c[1]), yaw),
                        "goal": (float(g[0]), float(g[1]), yaw),
                    }
                )
        raise RuntimeError("could not place the push task")

    def instruction(self, colors):
        return "push the %s cube onto the %s square" % (colors["cube"], colors["goal"])

    def success(self, world):
        c = world.object_position("cube")
        g = world.object_position("goal")
        return bool(np.linalg.norm(c[:2] - g[:2]) < self.tolerance and c[2] < CUBE_HALF + 0.01)

    def goal_distance(self, world):
        # the cube resting on the goal square's centre
        goal = world.object_position("goal") + np.array([0.0, 0.0, CUBE_HALF])
        return float(np.linalg.norm(world.object_position("cube") - goal))

    def waypoints(self, layout, home_yaw):
        c, g = layout.xy("cube"), layout.xy("goal")
        u = (g - c) / np.linalg.norm(g - c)
        # Fingers closed side by side across the push direction: the TCP x axis points along u.
        yaw = wrap_to(math.atan2(u[1], u[0]), home_yaw, math.pi)
        back = CUBE_HALF + 0.05
        s = c - u * back
        # The pads' half width (along u) plus the cube half size separates TCP and cube centre.
        e = g - u * (CUBE_HALF + 0.013)
        return [
            Waypoint((s[0], s[1], PUSH_Z + HOVER), yaw, 0.0, label="above_start"),
            Waypoint(
                (s[0], s[1], PUSH_Z), yaw, 0.0, linear=True, min_duration=1.2, label="descend"
            ),
            Waypoint((e[0], e[1], PUSH_Z), yaw, 0.0, linear=True, min_duration=2.5, label="push"),
            Waypoint(
                (e[0], e[1], PUSH_Z + HOVER),
                yaw,
                0.0,
                linear=True,
                min_duration=1.0,
                label="retreat",
            ),
        ]


@register_task
class PickPlaceTask(Task):
    name = "pick_place"
    action_category = "pick_place"
    objects = (("cube", "cube"), ("bowl", "bowl"))
    color_roles = (("cube", "red"), ("bowl", "blue"))

    def sample_layout(self, rng, home_tcp):
        c = _sample_xy(rng, [], 0.0)
        b = _sample_xy(rng, [c], 0.2, (0.4, 0.6, -0.2, 0.2))
        return Layout(
            poses={
                "cube": (float(c[0]), float(c[1]), float(rng.uniform(-math.pi / 4, math.pi / 4))),
                "bowl": (float(b[0]), float(b[1]), 0.0),
            }
        )

    def instruction(self, colors):
        return "put the %s cube in the %s bowl" % (colors["cube"], colors["bowl"])

    def success(self, world):
        c = world.object_position("cube")
        b = world.object_position("bowl")
        inside = (
            np.linalg.norm(c[:2] - b[:2]) < BOWL_INNER_RADIUS - 0.01
            and c[2] < BOWL_BOTTOM + BOWL_WALL_HEIGHT
        )
        return bool(inside and not world.hand_touches("cube"))

    def goal_distance(self, world):
        # the cube resting on the bowl's bottom, at its centre
        goal = world.object_position("bowl") + np.array([0.0, 0.0, BOWL_BOTTOM + CUBE_HALF])
        return float(np.linalg.norm(world.object_position("cube") - goal))

    def waypoints(self, layout, home_yaw):
        yaw, wps = _pick_waypoints(layout.xy("cube"), layout.yaw("cube"), home_yaw)
        return wps + _place_waypoints(layout.xy("bowl"), yaw, BOWL_BOTTOM + GRASP_Z + 0.03)


@register_task
class StackTask(Task):
    name = "stack"
    action_category = "stack"
    objects = (("cube_top", "cube"), ("cube_base", "cube"))
    color_roles = (("cube_top", "red"), ("cube_base", "blue"))

    def sample_layout(self, rng, home_tcp):
        a = _sample_xy(rng, [], 0.0)
        b = _sample_xy(rng, [a], 0.14)
        return Layout(
            poses={
                "cube_top": (
                    float(a[0]),
                    float(a[1]),
                    float(rng.uniform(-math.pi / 4, math.pi / 4)),
                ),
                "cube_base": (
                    float(b[0]),
                    float(b[1]),
                    float(rng.uniform(-math.pi / 4, math.pi / 4)),
                ),
            }
        )

    def instruction(self, colors):
        return "stack the %s cube on the %s cube" % (colors["cube_top"], colors["cube_base"])

    def success(self, world):
        a = world.object_position("cube_top")
        b = world.object_position("cube_base")
        on = (
            np.linalg.norm(a[:2] - b[:2]) < 0.6 * CUBE_HALF
            and abs(a[2] - b[2] - 2 * CUBE_HALF) < 0.01
        )
        return bool(on and not world.hand_touches("cube_top"))

    def goal_distance(self, world):
        # the top cube sitting squarely on the base cube
        goal = world.object_position("cube_base") + np.array([0.0, 0.0, 2 * CUBE_HALF])
        return float(np.linalg.norm(world.object_position("cube_top") - goal))

    def waypoints(self, layout, home_yaw):
        yaw, wps = _pick_waypoints(layout.xy("cube_top"), layout.yaw("cube_top"), home_yaw)
        # Place with the faces lined up with the base cube; the grasp yaw only changes mod 90 deg.
        place_yaw = wrap_to(layout.yaw("cube_base"), yaw, math.pi / 2)
        release_z = 2 * CUBE_HALF + GRASP_Z + 0.008
        return wps + _place_waypoints(layout.xy("cube_base"), place_yaw, release_z)


def task_names() -> List[str]:
    return list(TASKS)
