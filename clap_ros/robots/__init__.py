"""Robot profiles: the one place for joint names, limits, kinematics and driver facts.

Profiles are YAML files next to this module (``fr3``, ``panda``, ``ur5e``) or any path to a file of
the same shape. Nodes never hard-code these facts; they load a profile by the ``robot`` parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np
import yaml

PROFILE_DIR = Path(__file__).resolve().parent


class ProfileError(ValueError):
    """A robot profile is missing, malformed, or does not match the data given to it."""


@dataclass(frozen=True)
class JointLimits:
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    jerk: np.ndarray


@dataclass(frozen=True)
class Kinematics:
    convention: str  # "modified" (Craig) or "standard" DH
    a: np.ndarray
    d: np.ndarray
    alpha: np.ndarray
    theta_offset: np.ndarray
    flange_d: float
    flange_yaw: float
    tcp_offset: float


@dataclass(frozen=True)
class GripperSpec:
    joint_names: List[str]
    open_position: float
    closed_position: float
    max_effort: float

    def position_from_command(self, opening: float) -> float:
        """Map a normalised command (0 = closed, 1 = open) to this gripper's joint position."""
        opening = min(max(float(opening), 0.0), 1.0)
        return self.closed_position + opening * (self.open_position - self.closed_position)

    def command_from_position(self, position: float) -> float:
        span = self.open_position - self.closed_position
        return min(max((float(position) - self.closed_position) / span, 0.0), 1.0)


@dataclass(frozen=True)
class DriverSpec:
    rate_hz: float
    joint_states_topic: str
    high_rate_joint_states_topic: str
    joint_states_rate_hz: float
    trajectory_controller: str
    forward_controller: str
    gripper_command_topic: str
    raw_position_stream_ok: bool

    @property
    def trajectory_topic(self) -> str:
        return "/%s/joint_trajectory" % self.trajectory_controller

    @property
    def forward_topic(self) -> str:
        return "/%s/commands" % self.forward_controller


@dataclass(frozen=True)
class ReflexSpec:
    """What stops the real arm (profile ``reflexes``; clap_ros.sim.reflexes emulates it).

    ``style``: "franka" (collision thresholds on external joint torques and the Cartesian
    wrench, libfranka motion-generator checks on the commanded positions), "ur" (protective stop
    above a contact force) or "none". Thresholds are the upper ones (a reflex above them).
    """

    style: str = "none"
    torque_thresholds: np.ndarray | None = None  # Nm per joint
    force_thresholds: np.ndarray | None = None  # Fx Fy Fz (N) Tx Ty Tz (Nm)
    protective_stop_force: float | None = None  # N
    motion_checks: bool = False
    # Relative margin on the velocity/acceleration/jerk limits before a motion reflex.
    motion_tolerance: float = 0.0
    recovery_delay_s: float = 0.0  # UR: no unlock in the first 5 s
    recovery_max_speed: float = 0.01  # rad/s: recovery needs the arm at rest
    contact_filter_s: float = 0.0  # s: low-pass of the judged contact load
    error_topic: str = "/sim/robot_error"
    recovery_service: str = "/sim_driver/error_recovery"


def _reflex_spec(raw: Mapping | None, n: int, where: str) -> ReflexSpec:
    if not raw:
        return ReflexSpec()
    style = str(raw.get("style", "none"))
    if style not in ("franka", "ur", "none"):
        raise ProfileError("%s: reflexes.style must be franka, ur or none" % where)
    tq = fc = None
    if "upper_torque_thresholds" in raw:
        tq = _vec(raw, "upper_torque_thresholds", n, where)
    if "upper_force_thresholds" in raw:
        fc = _vec(raw, "upper_force_thresholds", 6, where)
    for v, name in ((tq, "upper_torque_thresholds"), (fc, "upper_force_thresholds")):
        if v is not None and not np.all(v > 0):
            raise ProfileError("%s: reflexes.%s must be positive" % (where, name))
    psf = raw.get("protective_stop_force")
    return ReflexSpec(
        style=style,
        torque_thresholds=tq,
        force_thresholds=fc,
        protective_stop_force=None if psf is None else float(psf),
        motion_checks=bool(raw.get("motion_checks", False)),
        motion_tolerance=float(raw.get("motion_tolerance", 0.0)),
        recovery_delay_s=float(raw.get("recovery_delay_s", 0.0)),
        recovery_max_speed=float(raw.get("recovery_max_speed", 0.01)),
        contact_filter_s=float(raw.get("contact_filter_s", 0.0)),
        error_topic=str(raw.get("error_topic", "/sim/robot_error")),
        recovery_service=str(raw.get("recovery_service", "/sim_driver/error_recovery")),
    )


@dataclass(frozen=True)
class RobotProfile:
    name: str
    description: str
    joint_names: List[str]
    joint_name_aliases: Dict[str, str]
    limits: JointLimits
    home: np.ndarray
    kinematics: Kinematics
    gripper: GripperSpec
    driver: DriverSpec
    # The model bundle (relative to the model search roots, clap_ros.inference.model_paths) a
    # node loads when its ``model`` parameter is empty; '' = none, the user must pass model:=.
    default_model: str = ""
    reflexes: ReflexSpec = field(default_factory=ReflexSpec, compare=False)
    source: str = field(default="", compare=False)

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    def canonical_name(self, name: str) -> str:
        return self.joint_name_aliases.get(name, name)

    def index_map(self, names: Sequence[str], require_all: bool = True) -> np.ndarray:
        """Indices into ``names`` that give this profile's joint order.

        Joint messages are indexed by name, never by order. Raises ProfileError naming the
        missing and unknown joints so a user sees at once which driver/profile pair is wrong.
        """
        canon = [self.canonical_name(str(n)) for n in names]
        pos = {n: i for i, n in enumerate(canon)}
        # A joint listed twice has two values, and which one is the measurement is a guess.
        twice = [n for n in self.joint_names if canon.count(n) > 1]
        if twice:
            raise ProfileError(
                "joint names list %s more than once (robot profile '%s')" % (twice, self.name)
            )
        missing = [n for n in self.joint_names if n not in pos]
        if missing and require_all:
            unknown = sorted(set(canon) - set(self.joint_names) - set(self.gripper.joint_names))
            raise ProfileError(
                "joint names do not match robot profile '%s': missing %s%s"
                % (self.name, missing, ("; unknown %s" % names_text(unknown)) if unknown else "")
            )
        return np.array([pos.get(n, -1) for n in self.joint_names], dtype=np.int64)

    def reorder(self, names: Sequence[str], values: Sequence[float]) -> np.ndarray:
        """Values for this profile's joints, in profile order, from a (names, values) pair."""
        if len(values) < len(names):
            raise ProfileError("got %d values for %d joint names" % (len(values), len(names)))
        idx = self.index_map(names)
        return np.asarray(values, dtype=np.float64)[idx]

    def within_limits(self, q: np.ndarray, margin: float = 0.0) -> bool:
        q = np.asarray(q, dtype=np.float64)
        return bool(
            np.all(np.isfinite(q))
            and np.all(q >= self.limits.lower + margin)
            and np.all(q <= self.limits.upper - margin)
        )

    # --- kinematics -------------------------------------------------------------------------
    def joint_frames(self, q: Sequence[float]) -> List[np.ndarray]:
        """4x4 world-from-link transforms of each joint frame (base at the origin)."""
        k = self.kinematics
        qa = np.asarray(q, dtype=np.float64)
        if qa.shape != (self.dof,):
            raise ProfileError("expected %d joint values, got shape %s" % (self.dof, qa.shape))
        T = np.eye(4)
        frames = []
        for i in range(self.dof):
            th = qa[i] + k.theta_offset[i]
            if k.convention == "modified":
                T = T @ rotx(k.alpha[i]) @ trans(k.a[i], 0, 0) @ rotz(th) @ trans(0, 0, k.d[i])
            else:
                T = T @ rotz(th) @ trans(0, 0, k.d[i]) @ trans(k.a[i], 0, 0) @ rotx(k.alpha[i])
            frames.append(T.copy())
        return frames

    def flange_pose(self, q: Sequence[float]) -> np.ndarray:
        """World-from-flange transform (the tool mounting plate)."""
        k = self.kinematics
        return self.joint_frames(q)[-1] @ trans(0, 0, k.flange_d) @ rotz(k.flange_yaw)

    def tcp_pose(self, q: Sequence[float]) -> np.ndarray:
        """World-from-TCP transform (between the fingertips, z pointing out of the gripper)."""
        return self.flange_pose(q) @ trans(0, 0, self.kinematics.tcp_offset)


def names_text(names: Sequence[str], limit: int = 8, chars: int = 40) -> str:
    """A list of names from a message for an error: the first ``limit``, each cut to ``chars``
    characters, and how many there are (a message can carry thousands of garbage names)."""
    shown = [n if len(n) <= chars else n[:chars] + "..." for n in names[:limit]]
    return str(shown) + (" and %d more" % (len(names) - limit) if len(names) > limit else "")


# Homogeneous 4x4 transforms: the one copy the kinematics and the MJCF builder share.
def rotx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])


def rotz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])


def trans(x: float, y: float, z: float) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = (x, y, z)
    return T


def available_profiles() -> List[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _vec(d: Mapping, key: str, n: int, where: str) -> np.ndarray:
    if key not in d:
        raise ProfileError("%s: missing '%s'" % (where, key))
    v = np.asarray(d[key], dtype=np.float64)
    if v.shape != (n,):
        raise ProfileError("%s: '%s' must have %d values, has %s" % (where, key, n, v.shape))
    return v


def load_profile(name_or_path: str) -> RobotProfile:
    """Load a profile by name (``fr3``, ``panda``, ``ur5e``) or by path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / ("%s.yaml" % name_or_path)
    if not path.is_file():
        raise ProfileError(
            "unknown robot '%s': choose one of %s or give a profile YAML path"
            % (name_or_path, ", ".join(available_profiles()))
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ProfileError("%s: not valid YAML: %s" % (path, e)) from e
    where = str(path)
    try:
        names = list(raw["joint_names"])
        n = len(names)
        lim = raw["limits"]
        limits = JointLimits(
            *(
                _vec(lim, k, n, where)
                for k in ("lower", "upper", "velocity", "acceleration", "jerk")
            )
        )
        if np.any(limits.lower >= limits.upper):
            raise ProfileError("%s: a lower limit is not below its upper limit" % where)
        kin = raw["kinematics"]
        kinematics = Kinematics(
            convention=str(kin["convention"]),
            a=_vec(kin, "a", n, where),
            d=_vec(kin, "d", n, where),
            alpha=_vec(kin, "alpha", n, where),
            theta_offset=_vec(kin, "theta_offset", n, where),
            flange_d=float(kin["flange"]["d"]),
            flange_yaw=float(kin["flange"]["yaw"]),
            tcp_offset=float(kin["tcp_offset"]),
        )
        if kinematics.convention not in ("modified", "standard"):
            raise ProfileError("%s: kinematics.convention must be 'modified' or 'standard'" % where)
        g = raw["gripper"]
        gripper = GripperSpec(
            list(g["joint_names"]),
            float(g["open_position"]),
            float(g["closed_position"]),
            float(g["max_effort"]),
        )
        drv = raw["driver"]
        driver = DriverSpec(
            rate_hz=float(drv["rate_hz"]),
            joint_states_topic=str(drv["joint_states_topic"]),
            high_rate_joint_states_topic=str(drv["high_rate_joint_states_topic"]),
            joint_states_rate_hz=float(drv["joint_states_rate_hz"]),
            trajectory_controller=str(drv["trajectory_controller"]),
            forward_controller=str(drv["forward_controller"]),
            gripper_command_topic=str(drv["gripper_command_topic"]),
            raw_position_stream_ok=bool(drv["raw_position_stream_ok"]),
        )
        home = _vec(raw, "home", n, where)
        profile = RobotProfile(
            name=str(raw["name"]),
            description=str(raw.get("description", "")),
            joint_names=names,
            joint_name_aliases=dict(raw.get("joint_name_aliases") or {}),
            limits=limits,
            home=home,
            kinematics=kinematics,
            gripper=gripper,
            driver=driver,
            default_model=str(raw.get("default_model") or ""),
            source=where,
            reflexes=_reflex_spec(raw.get("reflexes"), n, where),
        )
    except (KeyError, TypeError) as e:
        raise ProfileError("%s: malformed robot profile (%s)" % (where, e)) from e
    if not profile.within_limits(home):
        raise ProfileError("%s: home pose is outside the joint limits" % where)
    return profile
