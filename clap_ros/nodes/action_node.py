"""action_node: CLAP-RF action chunks -> safe arm commands (DESIGN.md sections 2 and 4).

Subscribes /clap/latent (the camera frame's latent), /clap/plan_tokens + /clap/plan (the
planner's tokens, paired with the plan that follows them) and the robot's joint_states (indexed
by name via the profile). Runs CLAP-RF on a worker thread whenever a new latent arrives, queues
each chunk on the frame's time axis with its measured availability time, and commands the driver
named by the robot profile:

* ``command_mode:=joint_trajectory``: one trajectory_msgs/JointTrajectory per chunk to
  ``/<trajectory_controller>/joint_trajectory`` (full joint set, positions + velocities,
  time_from_start > 0 and strictly increasing, zero final velocity, header stamp 0 = start now),
  made feasible against the profile's limits;
* ``command_mode:=forward_position``: std_msgs/Float64MultiArray to
  ``/<forward_controller>/commands`` at ``command_rate_hz``, every command through the safety
  filter, paced on its own thread with absolute deadlines.

Gripper openings (0 closed .. 1 open) go to the profile's gripper topic. The arm holds still until
``~/enable`` (std_srvs/SetBool; or ``enable_on_start``), fresh joint_states, a fresh latent and a
plan. A stale input, ``~/stop`` (std_srvs/Trigger), a model output with NaN/Inf or joint names
that do not match the profile bring it to a smooth, jerk-limited stop and hold, with the reason in
the log and on /clap/diagnostics. The control logic lives in the ROS-free core
clap_ros.runtime.action_core (parameters: clap_ros.runtime.params.ActionParams); this node is the
adapter: subscriptions -> core -> publications, parameters, diagnostics.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, Int32MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from clap_ros import topics as T
from clap_ros.control.pacing import sleep_until
from clap_ros.control.watchdog import State
from clap_ros.nodes.common import (
    COMMAND_QOS,
    SENSOR_QOS,
    STATE_QOS,
    ParameterError,
    RateLimitedLog,
    declare_robot,
    duration_from_s,
    run_node,
)
from clap_ros.nodes.diagnostics import ERROR, WARN, DiagnosticsPublisher
from clap_ros.nodes.runtime_params import declare_runtime
from clap_ros.nodes.schema_params import declare_params
from clap_ros.rostime import stamp_to_s
from clap_ros.runtime.action_core import ActionController
from clap_ros.runtime.messages import latent_from_image
from clap_ros.runtime.params import ActionParams, RuntimeParams


class ActionNode(Node):
    def __init__(self):
        super().__init__("action_node")
        robot, self.profile = declare_robot(self, default=ActionParams.spec("robot").default)
        cfg = declare_params(self, ActionParams, skip=RuntimeParams.RUNTIME_NAMES + ("robot",))
        cfg = cfg.replace(robot=robot)
        self.enable_on_start = cfg.enable_on_start
        js_topic = cfg.joint_states_topic
        self.runtime = declare_runtime(self, check_robot=self.profile.name)
        try:
            self.ctl = ActionController(self.profile, self.runtime, cfg)
        except ValueError as e:
            raise ParameterError("parameter 'model': %s" % e) from None
        self.cfg = cfg
        b = self.runtime.bundle
        self._tokens_shape = (b.latent_tokens, b.latent_dim)
        drv = self.profile.driver
        self.forward = cfg.command_mode == "forward_position"
        if self.forward:
            self.arm_topic = drv.forward_topic
            self.pub_arm = self.create_publisher(Float64MultiArray, self.arm_topic, COMMAND_QOS)
            if not drv.raw_position_stream_ok and cfg.command_rate_hz < drv.rate_hz:
                self.get_logger().warning(
                    "forward_position at %g Hz to a %g Hz driver with no command smoothing (%s): "
                    "prefer joint_trajectory or command_rate_hz:=%g"
                    % (cfg.command_rate_hz, drv.rate_hz, self.profile.name, drv.rate_hz)
                )
        else:
            self.arm_topic = drv.trajectory_topic
            self.pub_arm = self.create_publisher(JointTrajectory, self.arm_topic, COMMAND_QOS)
        self.gripper_topic = drv.gripper_command_topic
        self.pub_grip = self.create_publisher(Float64MultiArray, self.gripper_topic, COMMAND_QOS)
        self.log = RateLimitedLog(self.get_logger(), period_s=2.0)
        self.diag = DiagnosticsPublisher(
            self, period_s=1.0, hardware_id=self.profile.name, extra=self._diagnostics
        )
        self.create_subscription(Image, T.LATENT, self._on_latent, SENSOR_QOS)
        self.create_subscription(Int32MultiArray, T.PLAN_TOKENS, self._on_tokens, STATE_QOS)
        self.create_subscription(JointTrajectory, T.PLAN, self._on_plan, STATE_QOS)
        self.create_subscription(
            JointState, js_topic or drv.joint_states_topic, self._on_js, STATE_QOS
        )
        self.create_service(SetBool, "~/enable", self._on_enable)
        self.create_service(Trigger, "~/stop", self._on_stop)
        self.create_timer(0.1, self._drain_events)
        # Wake times of the last ticks (a preallocated ring: the loop must not allocate).
        self._wakes = np.zeros(2048)
        self._n_wakes = 0
        self._skipped_ticks = 0
        self._arm_msg = Float64MultiArray()
        self._grip_msg = Float64MultiArray()
        self._running = threading.Event()
        self._running.set()
        # A busy worker thread holding the GIL for CPython's default 5 ms would be a 5 ms
        # deadline miss at 500 Hz; this node's process is its own, so the setting is ours.
        sys.setswitchinterval(0.0005)
        if self.enable_on_start:
            self.ctl.enable(self.now_s())
            self.get_logger().info("enabled on start (enable_on_start:=true)")
        self._worker = threading.Thread(target=self._infer_loop, name="clap_rf", daemon=True)
        self._commander = threading.Thread(target=self._command_loop, name="commands", daemon=True)
        self._worker.start()
        self._commander.start()
        self.get_logger().info(
            "action_node: %s, %s to %s (+ gripper %s) at %g Hz, watchdog %s; %s"
            % (
                self.profile.name,
                cfg.command_mode,
                self.arm_topic,
                self.gripper_topic,
                1.0 / cfg.tick_period_s,
                cfg.thresholds,
                "enabled" if self.enable_on_start else "holding until ~/enable",
            )
        )

    # --- clock ---------------------------------------------------------------------------------
    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # --- inputs --------------------------------------------------------------------------------
    def _on_latent(self, msg: Image) -> None:
        try:
            lat = latent_from_image(msg, *self._tokens_shape)
            self.ctl.on_latent(lat, stamp_to_s(msg.header.stamp), self.now_s())
        except ValueError as e:
            self.log("latent", "ignoring /clap/latent: %s" % e)
            return
        except Exception as e:  # a callback never takes the node down
            self.log("exception", "latent callback failed: %r" % (e,), level="error")
            return
        self.diag.tick("latent")

    def _on_tokens(self, msg: Int32MultiArray) -> None:
        try:
            self.ctl.on_plan_tokens(list(msg.data))
        except ValueError as e:
            self.log("tokens", "ignoring /clap/plan_tokens: %s" % e)
        except Exception as e:
            self.log("exception", "plan_tokens callback failed: %r" % (e,), level="error")

    def _on_plan(self, msg: JointTrajectory) -> None:
        try:
            ok = self.ctl.on_plan(stamp_to_s(msg.header.stamp), self.now_s())
        except Exception as e:
            self.log("exception", "plan callback failed: %r" % (e,), level="error")
            return
        if not ok:
            self.log("plan", "ignoring /clap/plan: no /clap/plan_tokens received before it")
            return
        self.diag.tick("plan")

    def _on_js(self, msg: JointState) -> None:
        try:
            ok = self.ctl.on_joint_state(
                list(msg.name), list(msg.position), stamp_to_s(msg.header.stamp), self.now_s()
            )
        except Exception as e:
            self.log("exception", "joint_states callback failed: %r" % (e,), level="error")
            return
        if ok:
            self.diag.tick("joint_states")
            self.diag.clear("joint_names")
        else:
            self.diag.problem(
                "joint_names", ERROR, "joint_states rejected: %s" % self.ctl.joint_error
            )

    # --- services ------------------------------------------------------------------------------
    def _on_enable(self, req, resp):
        now = self.now_s()
        if req.data:
            reason = self.ctl.enable(now)
            resp.message = "enabled; %s" % reason
        else:
            reason = self.ctl.disable(now)
            resp.message = "disabled; %s" % reason
        resp.success = True
        self.get_logger().info("~/enable %s: %s" % (req.data, resp.message))
        return resp

    def _on_stop(self, req, resp):
        reason = self.ctl.stop(self.now_s())
        resp.success = True
        resp.message = "stopping and holding until ~/enable; %s" % reason
        self.get_logger().warning("~/stop called: %s" % resp.message)
        return resp

    # --- worker: CLAP-RF -----------------------------------------------------------------------
    def _infer_loop(self) -> None:
        while self._running.is_set():
            job = self.ctl.wait_job(0.1)
            if job is None:
                continue
            t0 = time.perf_counter()
            ok = self.ctl.infer_once(job, self.now_s)
            self.diag.latency("inference", time.perf_counter() - t0)
            if ok:
                self.diag.tick("chunks")
                self.diag.latency("frame_to_chunk", self.ctl.last_delay_s)

    # --- command loop --------------------------------------------------------------------------
    def _command_loop(self) -> None:
        """Absolute deadlines (k-th tick at start + k * period, so errors never accumulate):
        sleep until shortly before each, then spin. Nothing here logs or waits on inference."""
        period = self.cfg.tick_period_s
        # Spinning the last millisecond buys sub-ms precision for the position stream; the
        # trajectory mode's supervision tick does not need it.
        spin = min(0.001, 0.25 * period) if self.forward else 0.0
        clock = time.perf_counter
        start = clock()
        k = 0
        while self._running.is_set():
            k += 1
            deadline = start + k * period
            now = clock()
            if now > deadline + period:
                # Far behind (suspended, overloaded): skip the missed ticks, keep the grid.
                k_new = int((now - start) / period) + 1
                self._skipped_ticks += k_new - k
                k = k_new
                deadline = start + k * period
            self._wakes[self._n_wakes % self._wakes.size] = sleep_until(deadline, spin, clock)
            self._n_wakes += 1
            try:
                self._tick()
            except Exception as e:  # a publish during shutdown, or a bug: stop commanding
                if not self._running.is_set():
                    return
                self.ctl.events.append(("error", "command loop: %r" % e))
                self.ctl.stop(self.now_s(), "command loop error: %r" % e)

    def _tick(self) -> None:
        out = self.ctl.tick(self.now_s())
        if out.arm is not None:
            self._arm_msg.data = out.arm.tolist()
            self.pub_arm.publish(self._arm_msg)
            self.diag.tick("commands")
        if out.trajectory is not None:
            self.pub_arm.publish(self._trajectory_msg(out.trajectory))
            self.diag.tick("trajectories")
        if out.gripper is not None:
            self._grip_msg.data = [float(out.gripper)]
            self.pub_grip.publish(self._grip_msg)
        lat = self.ctl.pop_frame_to_command()
        if lat is not None:
            # pooled: make bench reports the whole run's figure, not only the last 5 s
            self.diag.latency("frame_to_command", lat, pooled=True)

    @staticmethod
    def _trajectory_msg(tr) -> JointTrajectory:
        msg = JointTrajectory()
        msg.joint_names = list(tr.joint_names)  # header stamp 0: start on receipt
        for t, q, qd in tr.points:
            msg.points.append(
                JointTrajectoryPoint(
                    positions=np.asarray(q, dtype=float).tolist(),
                    velocities=np.asarray(qd, dtype=float).tolist(),
                    time_from_start=duration_from_s(float(t)),
                )
            )
        return msg

    def _diagnostics(self) -> dict:
        d = self.ctl.diagnostics(self.now_s())
        n = min(self._n_wakes, self._wakes.size)
        if n > 2:
            # Sorting orders the ring (wake times only grow) even while the loop writes into it.
            w = np.sort(self._wakes[:n])
            period = self.cfg.tick_period_s
            err = np.abs(np.diff(w) - period)
            d["tick_rate_hz"] = round(float((n - 1) / (w[-1] - w[0])), 1)
            d["tick_period_error_p50_ms"] = round(float(np.median(err)) * 1e3, 3)
            d["tick_period_error_p99_ms"] = round(float(np.percentile(err, 99)) * 1e3, 3)
        d["ticks_skipped"] = self._skipped_ticks
        return d

    # --- logging (outside the command loop) ----------------------------------------------------
    def _drain_events(self) -> None:
        logger = self.get_logger()
        while self.ctl.events:
            level, text = self.ctl.events.popleft()
            # rclpy fixes a call site's severity at its first call, so each level logs from its
            # own line (RateLimitedLog is used for warnings only). Errors are already deduplicated
            # by the controller (one per fault / per new joint-name problem).
            if level == "error":
                logger.error(text)
            elif level == "warning":
                self.log(text[:40], text)
            else:
                logger.info(text)
        st = self.ctl.state
        if st is State.RUN:
            self.diag.clear("state")
        else:
            self.diag.problem("state", WARN, "%s: %s" % (st.value, self.ctl.reason()))

    # The longest a shutdown waits for the smooth stop: ros2 launch escalates to SIGTERM after 5 s.
    SHUTDOWN_STOP_TIMEOUT_S = 3.0

    def shutdown(self) -> None:
        # A moving arm is brought to rest first: the command loop keeps running and sends the
        # jerk-limited stop (the same one ~/stop gives) until the controller holds. run_node
        # calls this while the ROS context is still valid, so the stop is published.
        if self.ctl.state is not State.HOLD and self._commander.is_alive():
            self.get_logger().info("shutting down: stopping the arm first")
            self.ctl.stop(self.now_s(), "node shutting down")
            deadline = time.monotonic() + self.SHUTDOWN_STOP_TIMEOUT_S
            while (
                self.ctl.state is not State.HOLD
                and time.monotonic() < deadline
                and self._commander.is_alive()
            ):
                time.sleep(0.01)
            if self.ctl.state is State.HOLD:
                self.get_logger().info("arm stopped; exiting")
            else:
                self.get_logger().warning(
                    "the stop did not finish within %.1f s (%s)"
                    % (self.SHUTDOWN_STOP_TIMEOUT_S, self.ctl.reason())
                )
        self._running.clear()
        with self.ctl.fresh:
            self.ctl.fresh.notify_all()
        for th in (self._commander, self._worker):
            th.join(timeout=2.0)
        self.runtime.close()


def main(args=None) -> int:
    return run_node(ActionNode, args=args)


if __name__ == "__main__":
    sys.exit(main())
