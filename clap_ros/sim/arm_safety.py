"""What the sim driver adds around its controller so the sim arm fails where the real one would.

``ArmSafety`` ties the reflex monitor (clap_ros.sim.reflexes) and the JTC start/tolerance rules
(clap_ros.control.trajectory.TrajectoryFollower) to one world:

* a new trajectory starts from the measured state (unless ``interpolate_from_desired_state``),
  and the motion checks judge it from there;
* every controller update: the commanded motion is checked (libfranka-style) before it is
  applied, the contact load after the physics step, then the JTC path/goal tolerances;
* a reflex holds the arm at its measured position and refuses arm commands until ``recover``
  (the driver's error-recovery service), which is refused while the arm still moves.

No ROS here; the driver core calls it, so sim_driver and the direct evaluator share it.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np

from clap_ros.robots import RobotProfile
from clap_ros.sim.reflexes import ContactMeter, ReflexEvent, ReflexMonitor

Log = Callable[[str, str], None]


class ArmSafety:
    def __init__(
        self,
        profile: RobotProfile,
        world,
        control_dt: float,
        enabled: bool = True,
        log: Optional[Log] = None,
    ):
        self.profile = profile
        self.world = world
        self._log = log or (lambda level, text: None)
        self.monitor = ReflexMonitor(profile, control_dt, enabled=enabled, log=self._log)
        self.meter = ContactMeter(world) if self.monitor.enabled else None
        self.refused = 0
        self.tolerance_aborts = 0
        self.last_abort = ""

    # --- state -----------------------------------------------------------------------------
    @property
    def active(self) -> Optional[ReflexEvent]:
        return self.monitor.active

    def measured(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.world.arm_qpos(), self.world.arm_qvel()

    def restart(self) -> None:
        """A new episode (world reset): no reflex, nothing remembered."""
        self.monitor.restart()
        self.last_abort = ""

    # --- commands --------------------------------------------------------------------------
    def refusal(self) -> Optional[str]:
        """Why an arm command is refused now (None: it may go through)."""
        ev = self.monitor.active
        if ev is None:
            return None
        self.refused += 1
        return (
            "the robot is stopped by reflex %s (%s): arm commands are refused until error "
            "recovery (%s)" % (ev.reason, ev.detail, self.monitor.spec.recovery_service)
        )

    def trajectory_started(self, follower) -> None:
        """After an accepted trajectory that starts from the measured state: its motion is judged
        from its own first samples. The spline starts at the measured position and velocity by
        construction; the gap to the previous command is tracking error (up to 8 mrad in the
        sim's contacts), which no command asked for and which a 2 ms difference would turn into
        a false discontinuity. From the command (interpolate_from_desired_state) the history
        runs on: that start is continuous with the last command."""
        if not follower.rules.interpolate_from_desired_state:
            self.monitor.forget_motion()

    def forward_started(self) -> None:
        """A forward command after a trajectory: its steps are judged by position differences."""
        self.monitor.forget_motion()

    # --- each controller update ------------------------------------------------------------
    def before_step(
        self, t: float, follower, q: np.ndarray, qd: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray, Optional[ReflexEvent]]:
        """Check the command about to be applied; on a reflex return the hold instead."""
        if self.monitor.active is not None:
            return q, qd, None
        ev = self.monitor.check_motion(t, q, qd if follower.trajectory is not None else None)
        if ev is None:
            return q, qd, None
        hq = follower.hold_at(self.world.arm_qpos(), t)
        return hq, np.zeros_like(hq), ev

    def after_step(self, t: float, follower) -> Tuple[Optional[ReflexEvent], Optional[str]]:
        """Contact reflexes, then the JTC tolerances, on the state after the physics step."""
        ev = None
        if self.meter is not None and self.monitor.active is None:
            ev = self.monitor.check_contact(t, self.meter.measure())
            if ev is not None:
                follower.hold_at(self.world.arm_qpos(), t)
                self.monitor.forget_motion()
        abort = None
        if self.monitor.active is None:
            q, qd = self.measured()
            abort = follower.check(t, q, qd)
            if abort:
                self.tolerance_aborts += 1
                self.last_abort = abort
                self.monitor.forget_motion()
                self._log("warn", "trajectory aborted at t=%.3f s: %s" % (t, abort))
        return ev, abort

    # --- recovery --------------------------------------------------------------------------
    def recover(self, t: float, follower) -> Tuple[bool, str]:
        """Error recovery: refused while the arm moves; on success the arm holds where it is."""
        speed = float(np.max(np.abs(self.world.arm_qvel()))) if self.profile.dof else 0.0
        was = self.monitor.active
        ok, msg = self.monitor.recover(t, speed)
        if ok and was is not None:
            follower.hold_at(self.world.arm_qpos(), t)
            self.monitor.forget_motion()
        return ok, msg

    def status(self) -> dict:
        st = self.monitor.status()
        st.update(
            commands_refused=int(self.refused),
            tolerance_aborts=int(self.tolerance_aborts),
            last_trajectory_abort=self.last_abort,
            error_topic=self.monitor.spec.error_topic,
            recovery_service=self.monitor.spec.recovery_service,
        )
        return st
