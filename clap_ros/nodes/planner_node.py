"""planner_node: CLAP-NTP planning at planner_rate_hz from the latest latent, instruction and state.

Inputs: ``/clap/instruction`` (std_msgs/String, transient-local, so a planner started late still
gets it; the ``instruction`` parameter sets one at start-up), ``/clap/latent`` (32FC1 Image from
encoder_node) and the robot driver's joint states (indexed by name through the robot profile; the
gripper opening is the mean of the gripper joints, as in the dataset; a driver without finger
joints gives the last opening seen on the gripper command topic, open before any). Until there is a non-empty
instruction, a latent and joint states, nothing is planned (diagnostics say what is missing).

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
  chunk_dt_s``. Step i belongs to ``header.stamp + i * chunk_dt_s``, i.e. ``header.stamp +
  time_from_start - chunk_dt_s`` (the +1 keeps the first point > 0 as JointTrajectory requires).

Planning runs on a worker thread; callbacks only store the newest input. A latent older than
``max_latent_age_s`` or joint states older than ``max_state_age_s`` are not planned on. A model
NaN (InferenceError) is logged and nothing is published.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Optional

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, Int32MultiArray, MultiArrayDimension, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from clap_ros import topics as T
from clap_ros.nodes.clap_logic import (GRIPPER_JOINT_NAME, InputError, latent_from_image,
                                       plan_points, state_from_joint_state)
from clap_ros.nodes.common import (COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS,
                                   ParameterError, RateLimitedLog, declare, duration_from_s,
                                   run_node)
from clap_ros.nodes.diagnostics import ERROR, WARN, DiagnosticsPublisher
from clap_ros.nodes.runtime_params import declare_runtime
from clap_ros.nodes.common import declare_robot
from clap_ros.robots import ProfileError

NODE_NAME = "planner_node"


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class PlannerNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        robot, self.profile = declare_robot(self)
        js_topic = declare(self, "joint_states_topic", "",
                           "joint states topic ('' = the robot profile's: %s)"
                           % self.profile.driver.joint_states_topic)
        self.js_topic = js_topic or self.profile.driver.joint_states_topic
        self.rate = declare(self, "planner_rate_hz", 5.0, "plans per second (at most)",
                            min_value=0.1, max_value=100.0)
        instruction = declare(self, "instruction", "",
                              "task instruction at start-up ('' = wait for /clap/instruction)")
        self.max_latent_age = declare(self, "max_latent_age_s", 1.0,
                                      "do not plan on a latent older than this (0 = no check)",
                                      min_value=0.0, max_value=3600.0)
        self.max_state_age = declare(self, "max_state_age_s", 0.5,
                                     "do not plan on joint states older than this (0 = no check)",
                                     min_value=0.0, max_value=3600.0)
        self.rt = declare_runtime(self, check_robot=self.profile.name)
        b = self.rt.bundle
        if list(b.joint_names) != list(self.profile.joint_names):
            raise ParameterError("parameter 'model': bundle joints %s differ from robot '%s' "
                                 "joints %s" % (b.joint_names, self.profile.name,
                                                self.profile.joint_names))
        self.chunk_dt = float(b.manifest.get("chunk_dt_s") or 1.0 / b.control_rate_hz)

        self._lock = threading.Lock()
        self._instruction = instruction
        self._instruction_version = 1 if instruction else 0
        self._latent_msg: Optional[Image] = None
        self._latent_seq = 0
        self._js: Optional[JointState] = None
        self._js_received = 0.0
        self._planned = (0, -1)  # (latent seq, instruction version) of the last plan

        self.diag = DiagnosticsPublisher(self, hardware_id=self.profile.name)
        self.diag.set("backend", self.rt.backend)
        self.diag.set("instruction", instruction)
        self.diag.watch("latent", 1.0)
        self.diag.watch("joint_states", max(1.0, self.max_state_age))
        self.log = RateLimitedLog(self.get_logger(), period_s=2.0)

        self.pub_tokens = self.create_publisher(Int32MultiArray, T.PLAN_TOKENS, STATE_QOS)
        self.pub_plan = self.create_publisher(JointTrajectory, T.PLAN, STATE_QOS)
        self.create_subscription(String, T.INSTRUCTION, self._on_instruction, LATCHED_QOS)
        self.create_subscription(Image, T.LATENT, self._on_latent, SENSOR_QOS)
        self.create_subscription(JointState, self.js_topic, self._on_js, STATE_QOS)
        # A driver without finger joints in joint_states: the gripper state is the last opening
        # commanded to it (by the action node), open before any.
        self._gripper_cmd: Optional[float] = None
        self.create_subscription(Float64MultiArray, self.profile.driver.gripper_command_topic,
                                 self._on_gripper_command, COMMAND_QOS)
        self.exit_code = 0
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="planner", daemon=True)
        self._worker.start()
        self.get_logger().info("planning at %g Hz for robot %s%s" % (
            self.rate, self.profile.name,
            (": '%s'" % instruction) if instruction else "; waiting for /clap/instruction"))

    # -- callbacks: store the newest input only -----------------------------------------------
    def _on_instruction(self, msg: String) -> None:
        text = msg.data.strip()
        with self._lock:
            if text == self._instruction:
                return
            self._instruction = text
            self._instruction_version += 1
        self.diag.set("instruction", text)
        self.get_logger().info("instruction: '%s'" % text)

    def _on_latent(self, msg: Image) -> None:
        with self._lock:
            self._latent_msg = msg
            self._latent_seq += 1
        self.diag.touch("latent")
        self.diag.tick("latents_in")

    def _on_gripper_command(self, msg: Float64MultiArray) -> None:
        if len(msg.data) >= 1 and np.isfinite(msg.data[0]):
            self._gripper_cmd = float(min(max(msg.data[0], 0.0), 1.0))

    def _on_js(self, msg: JointState) -> None:
        with self._lock:
            self._js = msg
            self._js_received = time.monotonic()
        self.diag.touch("joint_states")

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
        from clap_ros.inference.policy import InferenceError
        with self._lock:
            instruction, version = self._instruction, self._instruction_version
            latent_msg, seq = self._latent_msg, self._latent_seq
            js, js_received = self._js, self._js_received
        missing = [what for what, ok in (("instruction", bool(instruction)),
                                         ("latent", latent_msg is not None),
                                         ("joint_states", js is not None)) if not ok]
        if missing:
            self.diag.problem("inputs", WARN, "waiting for %s" % ", ".join(missing))
            return False
        self.diag.clear("inputs")
        if (seq, version) == self._planned:
            return False  # nothing new to plan on
        if self.max_state_age > 0 and time.monotonic() - js_received > self.max_state_age:
            self.diag.problem("state_age", WARN, "joint_states stale")
            self.log("state_age", "joint_states older than %.2f s: not planning"
                     % self.max_state_age)
            return False
        self.diag.clear("state_age")
        now_ns = self.get_clock().now().nanoseconds
        age = (now_ns - _stamp_ns(latent_msg.header.stamp)) * 1e-9
        if self.max_latent_age > 0 and age > self.max_latent_age:
            self.diag.problem("latent_age", WARN, "latent stale (%.2f s old)" % age)
            self.log("latent_age", "latent is %.2f s old (> max_latent_age_s %.2f): not planning"
                     % (age, self.max_latent_age))
            return False
        self.diag.clear("latent_age")
        b = self.rt.bundle
        try:
            latent = latent_from_image(latent_msg, b.latent_tokens, b.latent_dim)
            state, gripper_measured = state_from_joint_state(self.profile, js.name, js.position)
        except (InputError, ProfileError) as e:
            self.diag.problem("input", WARN, str(e))
            self.log("input", "not planning: %s" % e)
            self._planned = (seq, version)
            return False
        self.diag.clear("input")
        if not gripper_measured:
            cmd = self._gripper_cmd
            if cmd is not None:
                state[-1] = cmd
            self.log("gripper", "joint_states has no gripper joint %s: using %s"
                     % (self.profile.gripper.joint_names,
                        "the last commanded opening %.2f" % cmd if cmd is not None
                        else "open (no gripper command seen yet)"), level="info")
        t0 = time.perf_counter()
        try:
            indices, coarse = self.rt.plan(latent, instruction, state)
            targets = self.rt.joint_targets(coarse, state)
        except InferenceError as e:
            self._planned = (seq, version)
            self.diag.tick("inference_errors")
            self.diag.problem("inference", ERROR, str(e))
            self.log("inference", "planner: %s; nothing published" % e, level="error")
            return False
        self.diag.clear("inference")
        self.diag.latency("plan", time.perf_counter() - t0)
        self._publish(latent_msg.header, indices, targets)
        self._planned = (seq, version)
        self.diag.latency("frame_to_plan",
                          (self.get_clock().now().nanoseconds
                           - _stamp_ns(latent_msg.header.stamp)) * 1e-9)
        return True

    def _publish(self, header, indices: np.ndarray, targets: np.ndarray) -> None:
        tokens = Int32MultiArray()
        tokens.layout.dim = [MultiArrayDimension(label="tokens", size=int(indices.size),
                                                 stride=int(indices.size))]
        tokens.data = [int(i) for i in indices]
        plan = JointTrajectory()
        plan.header = header
        plan.joint_names = list(self.profile.joint_names) + [GRIPPER_JOINT_NAME]
        for t, pos in plan_points(targets, self.chunk_dt):
            plan.points.append(JointTrajectoryPoint(positions=pos,
                                                    time_from_start=duration_from_s(t)))
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
