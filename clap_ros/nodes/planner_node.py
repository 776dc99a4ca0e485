"""planner_node: CLAP-NTP planning at planner_rate_hz from the latest latent, instruction and state.

A thin adapter around ``clap_ros.runtime.planner_core.PlannerCore`` (the logic, tested without
ROS): subscriptions -> core -> publications, parameters (``PlannerParams``, declared from the
schema with descriptions and ranges) and diagnostics.

Inputs: ``/clap/instruction`` (std_msgs/String, transient-local, so a planner started late still
gets it; the ``instruction`` parameter sets one at start-up; an empty / whitespace-only one or one
longer than ``max_instruction_chars`` is refused with a rate-limited warning, and logs quote at
most 80 characters of it), ``/clap/latent`` (32FC1 Image from encoder_node) and the robot
driver's joint states (indexed by name through the robot profile; duplicate names, mismatched
lengths, missing joints and NaN/inf are refused and counted; the gripper opening is the mean of
the gripper joints, as in the dataset; a driver without finger joints gives the last opening seen
on the gripper command topic, open before any). Until there is an instruction, a latent and joint
states, nothing is planned (diagnostics say what is missing).

Every 1 / ``planner_rate_hz`` s, if a latent newer than the last plan's arrived or the instruction
changed, the bundle's planner graph decodes the action tokens greedily and the codebook decoder
turns them into a coarse chunk. Published back to back, tokens first, so the latest tokens always
pair with the latest plan:

- ``/clap/plan_tokens`` (std_msgs/Int32MultiArray): the token indices (layout dim label
  "tokens"; ``layout.data_offset`` unused).
- ``/clap/plan`` (trajectory_msgs/JointTrajectory): ``header.stamp`` / ``frame_id`` = the source
  camera frame's (copied from the latent), ``joint_names`` = the profile's arm joints + "gripper"
  (opening, 0 closed .. 1 open); point i = chunk step i as absolute positions (a ``joint_delta``
  bundle's deltas are added to the state measured when planning), ``time_from_start = (i + 1) *
  chunk_dt_s`` (the bundle's chunk period). Step i belongs to ``header.stamp + i * chunk_dt_s``,
  i.e. ``header.stamp + time_from_start - chunk_dt_s`` (the +1 keeps the first point > 0 as
  JointTrajectory requires).

Planning runs on a worker thread; callbacks only hand the newest input to the core. A latent
older than ``max_latent_age_s`` or joint states older than ``max_state_age_s`` (both on the
node's clock) are not planned on. A model NaN (InferenceError) is logged and nothing is
published.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, Int32MultiArray, MultiArrayDimension, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from clap_ros import topics as T
from clap_ros.nodes.common import (
    COMMAND_QOS,
    LATCHED_QOS,
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
from clap_ros.rostime import stamp_to_ns, stamp_to_s
from clap_ros.runtime.messages import GRIPPER_JOINT_NAME, clip_text, plan_points
from clap_ros.runtime.params import PlannerParams, RuntimeParams
from clap_ros.runtime.planner_core import ERROR as CORE_ERROR, PROBLEM_KEYS, PlannerCore

NODE_NAME = "planner_node"


class PlannerNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        robot, self.profile = declare_robot(self, default=PlannerParams.spec("robot").default)
        p = declare_params(self, PlannerParams, skip=RuntimeParams.RUNTIME_NAMES + ("robot",))
        self.params = p = p.replace(robot=robot)
        self.js_topic = p.joint_states_topic or self.profile.driver.joint_states_topic
        self.rate = p.planner_rate_hz
        self.rt = declare_runtime(self, check_robot=self.profile.name)
        try:
            self.core = PlannerCore(self.rt, self.profile, p)
        except ValueError as e:
            raise ParameterError("parameter 'model': %s" % e) from None
        self.chunk_dt = self.core.chunk_dt

        self.diag = DiagnosticsPublisher(self, hardware_id=self.profile.name)
        self.diag.set("backend", self.rt.backend)
        self.diag.set("instruction", clip_text(p.instruction, quote=False))
        self.diag.watch("latent", 1.0)
        self.diag.watch("joint_states", max(1.0, p.max_state_age_s))
        self.log = RateLimitedLog(self.get_logger(), period_s=2.0)

        self.pub_tokens = self.create_publisher(Int32MultiArray, T.PLAN_TOKENS, STATE_QOS)
        self.pub_plan = self.create_publisher(JointTrajectory, T.PLAN, STATE_QOS)
        self.create_subscription(String, T.INSTRUCTION, self._on_instruction, LATCHED_QOS)
        self.create_subscription(Image, T.LATENT, self._on_latent, SENSOR_QOS)
        self.create_subscription(JointState, self.js_topic, self._on_js, STATE_QOS)
        # A driver without finger joints in joint_states: the gripper state is the last opening
        # commanded to it (by the action node), open before any.
        self.create_subscription(
            Float64MultiArray,
            self.profile.driver.gripper_command_topic,
            self._on_gripper_command,
            COMMAND_QOS,
        )
        self.exit_code = 0
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="planner", daemon=True)
        self._worker.start()
        self.get_logger().info(
            "planning at %g Hz for %s (joint states %s)%s"
            % (
                self.rate,
                self.profile.name,
                self.js_topic,
                ", instruction %s" % clip_text(p.instruction)
                if p.instruction
                else ", waiting for %s" % T.INSTRUCTION,
            )
        )

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _sync_problems(self) -> None:
        """The core's current problems -> diagnostics (set while they last, cleared after)."""
        problems = dict(self.core.problems)
        for key in PROBLEM_KEYS:
            if key in problems:
                level, text = problems[key]
                self.diag.problem(key, ERROR if level == CORE_ERROR else WARN, text)
            else:
                self.diag.clear(key)
        for k in ("instructions_refused", "latents_refused", "joint_states_refused"):
            self.diag.set(k, self.core.counters[k])

    # -- callbacks: hand the newest input to the core; never raise -----------------------------
    def _on_instruction(self, msg: String) -> None:
        try:
            before = self.core.instruction
            why = self.core.set_instruction(msg.data, self.now_s())
            if why:
                self.log("instruction", why)
            elif self.core.instruction != before:
                self.diag.set("instruction", clip_text(self.core.instruction, quote=False))
                self.get_logger().info("instruction: %s" % clip_text(self.core.instruction))
            self._sync_problems()
        except Exception as e:  # a callback never takes the node down
            self.log("exception", "instruction callback failed: %r" % (e,), level="error")

    def _on_latent(self, msg: Image) -> None:
        try:
            why = self.core.on_latent(
                msg, stamp_to_s(msg.header.stamp), self.now_s(), source=msg.header
            )
            if why:
                self.log("latent", why)
                self._sync_problems()
                return
            self.diag.touch("latent")
            self.diag.tick("latents_in")
        except Exception as e:
            self.log("exception", "latent callback failed: %r" % (e,), level="error")

    def _on_gripper_command(self, msg: Float64MultiArray) -> None:
        try:
            self.core.on_gripper_command(list(msg.data))
        except Exception as e:
            self.log("exception", "gripper command callback failed: %r" % (e,), level="error")

    def _on_js(self, msg: JointState) -> None:
        try:
            why = self.core.on_joint_state(
                list(msg.name), list(msg.position), stamp_to_s(msg.header.stamp), self.now_s()
            )
            if why:
                self.log("joint_states", why)
                self._sync_problems()
                return
            self.diag.touch("joint_states")
        except Exception as e:
            self.log("exception", "joint_states callback failed: %r" % (e,), level="error")

    # -- worker --------------------------------------------------------------------------------
    def _work(self) -> None:
        period = 1.0 / self.rate
        next_t = time.monotonic()
        while not self._stop.is_set():
            next_t += period
            delay = next_t - time.monotonic()
            if delay < 0:  # overran: restart the grid from now instead of bursting to catch up
                next_t = time.monotonic()
            elif self._stop.wait(delay):
                return
            try:
                self._plan_once()
            except Exception as e:  # keep planning; the reason is in the log and diagnostics
                self.diag.problem("exception", ERROR, "planning failed: %s" % e)
                self.log("exception", "planning failed: %r" % (e,), level="error")

    def _plan_once(self) -> bool:
        step = self.core.step(self.now_s())
        self._sync_problems()
        if step.note:
            self.log("gripper", step.note, level="info")
        if step.plan is None:
            if step.reason:
                level = "error" if "nothing published" in step.reason else "warning"
                key = "inference" if level == "error" else step.reason.split(" ")[0]
                self.log(key, step.reason, level=level)
            return False
        plan = step.plan
        self.diag.latency("plan", plan.seconds)
        self._publish(plan.source, plan.indices, plan.targets)
        self.diag.latency(
            "frame_to_plan",
            (self.get_clock().now().nanoseconds - stamp_to_ns(plan.source.stamp)) * 1e-9,
        )
        return True

    def _publish(self, header, indices: np.ndarray, targets: np.ndarray) -> None:
        tokens = Int32MultiArray()
        tokens.layout.dim = [
            MultiArrayDimension(label="tokens", size=int(indices.size), stride=int(indices.size))
        ]
        tokens.data = [int(i) for i in indices]
        plan = JointTrajectory()
        plan.header = header
        plan.joint_names = list(self.profile.joint_names) + [GRIPPER_JOINT_NAME]
        for t, pos in plan_points(targets, self.chunk_dt):
            plan.points.append(
                JointTrajectoryPoint(positions=pos, time_from_start=duration_from_s(t))
            )
        self.pub_tokens.publish(tokens)
        self.pub_plan.publish(plan)
        self.diag.tick("plans")

    def shutdown(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5.0)
        self.rt.close()


def main(args=None) -> int:
    return run_node(PlannerNode, args=args)


if __name__ == "__main__":
    sys.exit(main())
