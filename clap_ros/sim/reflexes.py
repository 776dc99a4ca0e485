"""Reflexes of the real arms, emulated for the sim driver (no ROS; MuJoCo only in ContactMeter).

A real Franka stops with an error when the estimated external joint torques or the external
Cartesian wrench exceed its collision thresholds (``setCollisionBehavior``), and when what the
controller commands is not a continuous motion (libfranka's motion-generator checks on the joint
positions it receives every controller cycle: velocity, acceleration and jerk limits). It stays
stopped until error recovery (``franka_msgs/action/ErrorRecovery``). A UR goes to protective stop
when the force it exerts exceeds its safety force limit, and stays there until the dashboard's
``unlock_protective_stop`` (refused during the first 5 s).

``ReflexMonitor`` holds that state machine; ``contact_load`` measures what the thresholds are
compared with from the MuJoCo contacts; the facts (thresholds, reason names, topic and service)
come from the robot profile's ``reflexes`` section (clap_ros.robots.ReflexSpec). The driver core
calls ``check_motion`` with every command it applies, ``check_contact`` after every physics
update, holds the arm at the measured position while ``active``, refuses commands, and calls
``recover`` from its recovery service.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from clap_ros.robots import ReflexSpec, RobotProfile

# libfranka's franka::Errors names (what franka_ros2 reports as the robot's current errors) this
# emulation can raise, and the UR safety mode it can enter.
FRANKA_REASONS = (
    "joint_reflex",
    "cartesian_reflex",
    "joint_motion_generator_velocity_limits_violation",
    "joint_motion_generator_velocity_discontinuity",
    "joint_motion_generator_acceleration_discontinuity",
    "self_collision_avoidance_violation",
)
UR_REASONS = ("PROTECTIVE_STOP",)
KNOWN_REASONS = FRANKA_REASONS + UR_REASONS
# What an unknown reason is recorded as: the arm still stops (a reflex never passes silently).
UNKNOWN_REASON = "unknown_reflex"


@dataclass
class ReflexEvent:
    """One reflex: the driver's reason name, a sentence for a person, when, and the figures."""

    reason: str
    detail: str
    t: float
    values: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "t": round(float(self.t), 4),
            **self.values,
        }


@dataclass(frozen=True)
class ContactLoad:
    """External load on the arm from its contacts (profile joint order, base frame)."""

    tau_ext: np.ndarray  # Nm per arm joint
    wrench: np.ndarray  # (Fx, Fy, Fz, Tx, Ty, Tz) at the TCP, estimated from tau_ext
    max_body_force: float  # N: the largest net contact force on one robot body
    body: str  # that body
    self_contact: str  # "" or "bodyA/bodyB" of a robot-robot contact


class ReflexMonitor:
    """The reflex state machine of one arm; see the module docstring.

    ``control_dt`` is the controller period the commanded positions arrive at (the motion
    checks differentiate them over it).
    """

    def __init__(
        self,
        profile: RobotProfile,
        control_dt: float,
        spec: Optional[ReflexSpec] = None,
        enabled: bool = True,
        log=None,
    ):
        self.profile = profile
        self.spec = spec if spec is not None else profile.reflexes
        self.enabled = bool(enabled) and self.spec.style != "none"
        self.dt = float(control_dt)
        if not self.dt > 0:
            raise ValueError("control_dt must be positive, got %r" % control_dt)
        self._log = log or (lambda level, text: None)
        self.active: Optional[ReflexEvent] = None
        self.history: List[ReflexEvent] = []
        self.recoveries = 0
        self.peaks = {
            "tau_ratio": 0.0,
            "force_ratio": 0.0,
            "body_force_n": 0.0,
            "velocity_ratio": 0.0,
            "acceleration_ratio": 0.0,
            "jerk_ratio": 0.0,
        }
        self._q: List[Tuple[np.ndarray, Optional[np.ndarray]]] = []
        self._filt: Optional[Tuple[np.ndarray, np.ndarray, float]] = None

    # --- state ------------------------------------------------------------------------------
    @property
    def reason(self) -> str:
        return self.active.reason if self.active else ""

    def trip(self, reason: str, detail: str, t: float, **values) -> ReflexEvent:
        """Enter the reflex state (the first reflex wins until recovery). An unknown reason still
        stops the arm, recorded as ``unknown_reflex`` with the given name in the detail."""
        if reason not in KNOWN_REASONS:
            self._log(
                "error",
                "unknown reflex reason %r (known: %s): stopping the arm anyway"
                % (str(reason)[:60], ", ".join(KNOWN_REASONS)),
            )
            detail = "unknown reflex reason %r: %s" % (str(reason)[:60], detail)
            reason = UNKNOWN_REASON
        if self.active is not None:
            return self.active
        ev = ReflexEvent(reason, detail, float(t), {k: _round(v) for k, v in values.items()})
        self.active = ev
        self.history.append(ev)
        self._q.clear()
        self._log(
            "error",
            "reflex %s at t=%.3f s: %s; the arm holds and commands are refused "
            "until error recovery" % (ev.reason, ev.t, detail),
        )
        return ev

    def recover(self, t: float, arm_speed: float) -> Tuple[bool, str]:
        """Error recovery / unlock: refused while the arm still moves (``arm_speed`` = largest
        joint speed, rad/s) and, for a UR, during ``recovery_delay_s`` after the stop."""
        if self.active is None:
            return True, "no reflex active: nothing to recover"
        if not math.isfinite(arm_speed) or arm_speed > self.spec.recovery_max_speed:
            msg = (
                "recovery refused: the arm is still moving (%.3f rad/s > %.3f rad/s); wait "
                "until it is at rest" % (arm_speed, self.spec.recovery_max_speed)
            )
            self._log("warn", msg)
            return False, msg
        waited = t - self.active.t
        if waited < self.spec.recovery_delay_s:
            msg = (
                "recovery refused: cannot unlock %s until %.1f s after occurrence (%.2f s "
                "so far)" % (self.active.reason, self.spec.recovery_delay_s, waited)
            )
            self._log("warn", msg)
            return False, msg
        msg = "recovered from %s (at t=%.3f s)" % (self.active.reason, self.active.t)
        self.active = None
        self.recoveries += 1
        self._q.clear()
        self._log("info", msg)
        return True, msg

    def restart(self) -> None:
        """New episode: no reflex, no motion or load history (peaks kept until
        ``reset_peaks``)."""
        self.active = None
        self._q.clear()
        self._filt = None

    def reset_peaks(self) -> None:
        for k in self.peaks:
            self.peaks[k] = 0.0

    def forget_motion(self) -> None:
        """The command source changed by design (reset, hold): differences across it are no
        motion the controller asked for."""
        self._q.clear()

    # --- checks -----------------------------------------------------------------------------
    def check_motion(
        self, t: float, q_cmd: np.ndarray, qd_cmd: Optional[np.ndarray] = None
    ) -> Optional[ReflexEvent]:
        """libfranka-style checks of the commanded motion at the controller rate: velocity,
        acceleration and jerk limits. With ``qd_cmd`` (the controller's commanded velocity) the
        velocity is that and its differences are the acceleration and jerk; without it all three
        are differences of the commanded positions."""
        if not self.enabled or not self.spec.motion_checks or self.active is not None:
            return None
        q = np.asarray(q_cmd, dtype=np.float64).copy()
        if qd_cmd is None:
            if self._q:
                v = (q - self._q[-1][0]) / self.dt
            else:
                v = None
        else:
            v = np.asarray(qd_cmd, dtype=np.float64).copy()
        self._q.append((q, v))
        if len(self._q) > 3:
            self._q.pop(0)
        lim = self.profile.limits
        tol = 1.0 + self.spec.motion_tolerance
        dt = self.dt
        names = self.profile.joint_names
        vs = [x[1] for x in self._q if x[1] is not None]
        if vs:
            r = np.abs(vs[-1]) / lim.velocity
            self._peak("velocity_ratio", r)
            if np.any(r > tol):
                j = int(np.argmax(r))
                return self.trip(
                    "joint_motion_generator_velocity_limits_violation",
                    "commanded %s moves at %.2f rad/s (limit %.2f rad/s)"
                    % (names[j], vs[-1][j], lim.velocity[j]),
                    t,
                    joint=names[j],
                    value=float(vs[-1][j]),
                    limit=float(lim.velocity[j]),
                )
        if len(vs) >= 2:
            a = (vs[-1] - vs[-2]) / dt
            r = np.abs(a) / lim.acceleration
            self._peak("acceleration_ratio", r)
            if np.any(r > tol):
                j = int(np.argmax(r))
                return self.trip(
                    "joint_motion_generator_velocity_discontinuity",
                    "commanded %s velocity jumps by %.3f rad/s in one cycle (%.1f rad/s^2, limit "
                    "%.1f rad/s^2)" % (names[j], (vs[-1] - vs[-2])[j], a[j], lim.acceleration[j]),
                    t,
                    joint=names[j],
                    value=float(a[j]),
                    limit=float(lim.acceleration[j]),
                )
        if len(vs) >= 3:
            a1, a0 = (vs[-1] - vs[-2]) / dt, (vs[-2] - vs[-3]) / dt
            jerk = (a1 - a0) / dt
            r = np.abs(jerk) / lim.jerk
            self._peak("jerk_ratio", r)
            if np.any(r > tol):
                j = int(np.argmax(r))
                return self.trip(
                    "joint_motion_generator_acceleration_discontinuity",
                    "commanded %s acceleration jumps by %.2f rad/s^2 in one cycle (%.0f rad/s^3, "
                    "limit %.0f rad/s^3)" % (names[j], (a1 - a0)[j], jerk[j], lim.jerk[j]),
                    t,
                    joint=names[j],
                    value=float(jerk[j]),
                    limit=float(lim.jerk[j]),
                )
        return None

    def check_contact(self, t: float, load: ContactLoad) -> Optional[ReflexEvent]:
        """Franka: external joint torques / Cartesian wrench above the upper collision
        thresholds; UR: a contact force above the safety force limit."""
        if not self.enabled or self.active is not None:
            return None
        s = self.spec
        names = self.profile.joint_names
        load = self._filtered(load)
        self.peaks["body_force_n"] = max(self.peaks["body_force_n"], float(load.max_body_force))
        if s.style == "franka":
            if load.self_contact:
                return self.trip(
                    "self_collision_avoidance_violation", "links %s touch" % load.self_contact, t
                )
            if s.torque_thresholds is not None:
                r = np.abs(load.tau_ext) / s.torque_thresholds
                self._peak("tau_ratio", r)
                if np.any(r > 1.0):
                    j = int(np.argmax(r))
                    return self.trip(
                        "joint_reflex",
                        "external torque on %s is %.1f Nm (upper collision "
                        "threshold %.1f Nm)" % (names[j], load.tau_ext[j], s.torque_thresholds[j]),
                        t,
                        joint=names[j],
                        value=float(load.tau_ext[j]),
                        limit=float(s.torque_thresholds[j]),
                        body=load.body,
                    )
            if s.force_thresholds is not None:
                r = np.abs(load.wrench) / s.force_thresholds
                self._peak("force_ratio", r)
                if np.any(r > 1.0):
                    k = int(np.argmax(r))
                    axis = ("Fx", "Fy", "Fz", "Tx", "Ty", "Tz")[k]
                    return self.trip(
                        "cartesian_reflex",
                        "external %s is %.1f %s (upper collision threshold "
                        "%.1f)"
                        % (axis, load.wrench[k], "N" if k < 3 else "Nm", s.force_thresholds[k]),
                        t,
                        axis=axis,
                        value=float(load.wrench[k]),
                        limit=float(s.force_thresholds[k]),
                        body=load.body,
                    )
        elif s.style == "ur" and s.protective_stop_force is not None:
            self.peaks["force_ratio"] = max(
                self.peaks["force_ratio"], load.max_body_force / s.protective_stop_force
            )
            if load.max_body_force > s.protective_stop_force:
                return self.trip(
                    "PROTECTIVE_STOP",
                    "contact force on %s is %.0f N (safety force limit "
                    "%.0f N)" % (load.body, load.max_body_force, s.protective_stop_force),
                    t,
                    value=float(load.max_body_force),
                    limit=float(s.protective_stop_force),
                    body=load.body,
                )
        return None

    def _filtered(self, load: ContactLoad) -> ContactLoad:
        """First-order low-pass of the load (time constant ``spec.contact_filter_s``): the real
        arms judge filtered estimates (Franka's tau_ext_hat_filtered), and a rigid-contact sim's
        single-step impulses are no force a torque sensor would see."""
        tc = self.spec.contact_filter_s
        if tc <= 0:
            return load
        a = self.dt / (tc + self.dt)
        f = self._filt
        if f is None:
            f = (np.zeros_like(load.tau_ext), np.zeros(6), 0.0)
        tau = f[0] + a * (load.tau_ext - f[0])
        wr = f[1] + a * (load.wrench - f[1])
        fb = f[2] + a * (load.max_body_force - f[2])
        self._filt = (tau, wr, fb)
        return ContactLoad(tau, wr, fb, load.body, load.self_contact)

    def _peak(self, key: str, ratios: np.ndarray) -> None:
        m = float(np.max(ratios)) if ratios.size else 0.0
        if math.isfinite(m):
            self.peaks[key] = max(self.peaks[key], m)

    def status(self) -> dict:
        """What the driver's error topic / status reports."""
        return {
            "reflex_active": self.active is not None,
            "reflex": self.active.as_dict() if self.active else None,
            "reflexes": len(self.history),
            "recoveries": self.recoveries,
            "style": self.spec.style,
            "enabled": self.enabled,
        }


def _round(v):
    return round(v, 4) if isinstance(v, float) else v


class ContactMeter:
    """``ContactLoad`` of a SimWorld's arm from its MuJoCo contacts (indices built once).

    The external joint torques are the contact part of the constraint forces mapped through the
    contact Jacobians (joint-limit and equality forces left out, as Franka's tau_ext_hat leaves
    out what its model explains); the wrench is Franka's O_F_ext_hat_K estimate from them,
    pinv(J_tcp^T) tau_ext; grasp forces between the two fingers and a held object cancel there as
    they do on the real arm.
    """

    def __init__(self, world):
        import mujoco

        self._mj = mujoco
        self.world = world
        m = world.model
        self.arm_dofs = np.array([m.joint(n).dofadr[0] for n in world.embodiment.arm_joint_names])
        robot_bodies = set()
        root = m.body("base").id
        for b in range(m.nbody):
            p = b
            while p > 0 and p != root:
                p = m.body_parentid[p]
            if p == root:
                robot_bodies.add(b)
        self.robot_body = np.zeros(m.nbody, dtype=bool)
        self.robot_body[list(robot_bodies)] = True
        self.tcp = m.site(world.embodiment.tcp_site).id
        self._res = np.zeros(m.nv)
        self._jp = np.zeros((3, m.nv))
        self._jr = np.zeros((3, m.nv))
        self._f6 = np.zeros(6)
        self._R_base = np.asarray(world.base_pose)[:3, :3]

    def measure(self) -> ContactLoad:
        mj, m, d = self._mj, self.world.model, self.world.data
        n = d.ncon
        dof = len(self.arm_dofs)
        if n == 0:
            return ContactLoad(np.zeros(dof), np.zeros(6), 0.0, "", "")
        forces = np.zeros(d.nefc)
        per_body: dict = {}
        self_contact = ""
        for i in range(n):
            c = d.contact[i]
            if c.efc_address < 0:
                continue
            b1 = m.geom_bodyid[c.geom1]
            b2 = m.geom_bodyid[c.geom2]
            r1, r2 = self.robot_body[b1], self.robot_body[b2]
            if not (r1 or r2):
                continue
            dim = int(c.dim)
            # pyramidal cones have 2 (dim - 1) rows per contact, elliptic ones dim
            nrow = 2 * (dim - 1) if m.opt.cone == mj.mjtCone.mjCONE_PYRAMIDAL and dim > 1 else dim
            rows = slice(c.efc_address, c.efc_address + nrow)
            forces[rows] = d.efc_force[rows]
            if r1 and r2:
                self_contact = "%s/%s" % (m.body(b1).name, m.body(b2).name)
            mj.mj_contactForce(m, d, i, self._f6)
            # the force geom1 exerts on geom2 (the normal points from geom1 to geom2)
            f_world = c.frame.reshape(3, 3).T @ self._f6[:3]
            for b, is_robot, sign in ((b1, r1, -1.0), (b2, r2, 1.0)):
                if is_robot:
                    per_body[b] = per_body.get(b, np.zeros(3)) + sign * f_world
        mj.mj_mulJacTVec(m, d, self._res, forces)
        tau = self._res[self.arm_dofs].copy()
        mj.mj_jacSite(m, d, self._jp, self._jr, self.tcp)
        J = np.vstack([self._jp[:, self.arm_dofs], self._jr[:, self.arm_dofs]])
        wrench = np.linalg.pinv(J.T, rcond=1e-3) @ tau
        R = self._R_base.T  # world -> robot base frame (Franka reports O_F in its base frame)
        wrench = np.concatenate([R @ wrench[:3], R @ wrench[3:]])
        body, fmax = "", 0.0
        for b, f in per_body.items():
            fn = float(np.linalg.norm(f))
            if fn > fmax:
                body, fmax = m.body(b).name, fn
        return ContactLoad(tau, wrench, fmax, body, self_contact)
