"""expert_node: stream the scripted expert's plan to a driver, the way a policy would.

Builds the plan from (robot, task, seed) alone (SimWorld + make_expert, no rendering: the expert
plans from the seed's initial layout), publishes the instruction on /clap/instruction (transient
local), waits for /joint_states, then sends the plan either as JointTrajectory chunks (every
``chunk_period_s`` a chunk covering ``chunk_horizon_s``: positions + velocities, first point > 0,
full joint set, zero velocity on the last point as the JTC requires; each chunk replaces the last)
or as forward-position commands at ``command_rate_hz``, plus gripper commands. Exits 0 once the
plan is done and ``settle_s`` has passed, 1 if no joint states arrive in time.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from clap_ros import topics as T
from clap_ros.control.trajectory import trajectory_chunk  # noqa: F401  (re-exported)
from clap_ros.nodes.common import (
    COMMAND_QOS,
    LATCHED_QOS,
    STATE_QOS,
    ParameterError,
    declare,
    declare_robot,
    duration_from_s,
    run_node,
)
from clap_ros.robots import ProfileError
from clap_ros.sim.expert import ExpertStreamConfig, ExpertStreamer

NODE_NAME = "expert_node"
COMMAND_MODES = ("joint_trajectory", "forward_position")


def build_plan(robot: str, task: str, seed: int, randomize: bool = True):
    """(world, plan) for a seed, exactly as the driver's world is laid out after reset(seed)."""
    from clap_ros.sim import SimWorld, make_expert

    world = SimWorld(robot=robot, task=task, seed=seed, randomize=randomize)
    return world, make_expert(world).plan()


class ExpertNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        robot, self.profile = declare_robot(self)
        from clap_ros.sim import TASKS

        task = declare(self, "task", "pick_place", "sim task", choices=list(TASKS))
        seed = declare(
            self,
            "seed",
            0,
            "layout seed; must match the driver's",
            min_value=0,
            max_value=2**31 - 1,
        )
        randomize = declare(self, "randomize", True, "must match the driver's randomize")
        d = ExpertStreamConfig()
        self.mode = declare(
            self, "command_mode", d.command_mode, "how commands are sent", choices=COMMAND_MODES
        )
        self.chunk_period = declare(
            self,
            "chunk_period_s",
            d.chunk_period_s,
            "time between trajectory chunks, s",
            min_value=0.005,
            max_value=10.0,
        )
        self.horizon = declare(
            self,
            "chunk_horizon_s",
            d.chunk_horizon_s,
            "time covered by one chunk, s",
            min_value=0.01,
            max_value=60.0,
        )
        self.point_period = declare(
            self,
            "point_period_s",
            d.point_period_s,
            "spacing of points inside a chunk, s",
            min_value=0.001,
            max_value=10.0,
        )
        self.command_rate = declare(
            self,
            "command_rate_hz",
            d.command_rate_hz,
            "forward_position command rate, Hz",
            min_value=1.0,
            max_value=2000.0,
        )
        self.wait_timeout = declare(
            self,
            "wait_timeout_s",
            30.0,
            "give up if not started (joint states, subscribers) within "
            "this, s (not with wait_for_seed)",
            min_value=0.1,
            max_value=3600.0,
        )
        self.settle = declare(
            self,
            "settle_s",
            0.5,
            "hold time after the plan before exiting, s",
            min_value=0.0,
            max_value=60.0,
        )
        self.wait_for_seed = declare(
            self,
            "wait_for_seed",
            False,
            "start only once /sim/status reports this seed (lets a recorder start the next "
            "expert while the current episode runs)",
        )
        self.min_resets = declare(
            self,
            "min_resets",
            0,
            "with wait_for_seed: also wait until the driver has been reset this many times, so "
            "an expert started before the reset it belongs to does not start early",
            min_value=0,
            max_value=2**31 - 1,
        )
        self.min_subscribers = declare(
            self,
            "min_subscribers",
            1,
            "start only once each command topic has this many matched subscribers (the driver; "
            "2 when a recorder must see every command too)",
            min_value=0,
            max_value=100,
        )
        self.seed = seed
        if self.horizon < self.chunk_period:
            raise ParameterError(
                "chunk_horizon_s (%g) must be >= chunk_period_s (%g), or the arm "
                "would stop between chunks" % (self.horizon, self.chunk_period)
            )
        drv = self.profile.driver
        if self.mode == "forward_position" and not drv.raw_position_stream_ok:
            self.get_logger().warning(
                "%s's real driver does not filter streamed positions; forward_position is for "
                "the sim (use joint_trajectory on the real arm)" % self.profile.name
            )

        world, self.plan = build_plan(robot, task, seed, randomize)
        self.streamer = ExpertStreamer(
            self.plan,
            ExpertStreamConfig(
                self.mode, self.chunk_period, self.horizon, self.point_period, self.command_rate
            ),
        )
        self.instruction = world.instruction
        q0, _, _ = self.plan.sample(0.0)
        self.plan_start = np.asarray(q0, dtype=np.float64)
        del world

        # Published when streaming starts, so a recorder sees it as the start of the episode.
        self.pub_instr = self.create_publisher(String, T.INSTRUCTION, LATCHED_QOS)
        self.seed_ready = not self.wait_for_seed
        if self.wait_for_seed:
            self.create_subscription(String, T.SIM_STATUS, self._on_status, LATCHED_QOS)
        self.pub_traj = self.create_publisher(JointTrajectory, drv.trajectory_topic, COMMAND_QOS)
        self.pub_fwd = self.create_publisher(Float64MultiArray, drv.forward_topic, COMMAND_QOS)
        self.pub_grip = self.create_publisher(
            Float64MultiArray, drv.gripper_command_topic, COMMAND_QOS
        )
        self.joint_state: Optional[np.ndarray] = None
        self.create_subscription(JointState, drv.joint_states_topic, self._on_js, STATE_QOS)
        self.t0: Optional[float] = None
        self.done_at: Optional[float] = None
        self.exit_code: Optional[int] = None
        self.sent = 0
        self.timer = self.create_timer(self.streamer.config.period_s, self._tick)
        self.started_wall = self._now()
        self.get_logger().info(
            "expert: '%s' (seed %d, %.2f s plan, %s)"
            % (self.instruction, seed, self.plan.duration, self.mode)
        )

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_status(self, msg: String) -> None:
        try:
            status = json.loads(msg.data)
            self.seed_ready = (
                status.get("seed") == self.seed and int(status.get("resets", 0)) >= self.min_resets
            )
        except ValueError:
            self.get_logger().error("bad /sim/status JSON: %r" % msg.data[:200])

    def _on_js(self, msg: JointState) -> None:
        try:
            self.joint_state = self.profile.reorder(msg.name, msg.position)
        except ProfileError as e:
            self.get_logger().error("bad /joint_states: %s" % e)

    def _tick(self) -> None:
        now = self._now()
        if self.t0 is None:
            cmd_pub = self.pub_traj if self.mode == "joint_trajectory" else self.pub_fwd
            listening = (
                min(cmd_pub.get_subscription_count(), self.pub_grip.get_subscription_count())
                >= self.min_subscribers
            )
            if self.joint_state is None or not self.seed_ready or not listening:
                self.joint_state = None if not self.seed_ready else self.joint_state
                if not self.wait_for_seed and now - self.started_wall > self.wait_timeout:
                    self.get_logger().error(
                        "not started within %.1f s: joint states %s, %d/%d subscribers on the "
                        "command topics"
                        % (
                            self.wait_timeout,
                            "received" if self.joint_state is not None else "missing",
                            min(
                                cmd_pub.get_subscription_count(),
                                self.pub_grip.get_subscription_count(),
                            ),
                            self.min_subscribers,
                        )
                    )
                    self.exit_code = 1
                return
            self.pub_instr.publish(String(data=self.instruction))
            gap = float(np.max(np.abs(self.joint_state - self.plan_start)))
            if gap > 0.05:
                self.get_logger().warning(
                    "arm is %.3f rad from the plan's start: is the driver reset to this seed?" % gap
                )
            self.t0 = now
        tau = now - self.t0
        if self.done_at is not None:
            if now - self.done_at >= self.settle:
                self.exit_code = 0
            return
        # The same commands the direct evaluator hands its driver core (ExpertStreamer).
        for kind, payload in self.streamer.commands(tau):
            if kind == "trajectory":
                self._send_chunk(*payload)
            elif kind == "forward":
                self.pub_fwd.publish(Float64MultiArray(data=payload))
            else:
                self.pub_grip.publish(Float64MultiArray(data=payload))
        self.sent += 1
        if tau >= self.plan.duration:
            self.done_at = now

    def _send_chunk(self, joint_names, points) -> None:
        msg = JointTrajectory()
        msg.joint_names = list(joint_names)  # stamp 0: start on receipt
        for t, q, qd in points:
            p = JointTrajectoryPoint()
            p.time_from_start = duration_from_s(t)
            p.positions = [float(x) for x in q]
            if qd is not None:
                p.velocities = [float(x) for x in qd]
            msg.points.append(p)
        self.pub_traj.publish(msg)


def spin_until_done(node: ExpertNode) -> int:
    while rclpy.ok() and node.exit_code is None:
        rclpy.spin_once(node, timeout_sec=0.05)
    if node.exit_code == 0:
        node.get_logger().info("plan done (%d commands sent)" % node.sent)
    return 0 if node.exit_code is None else node.exit_code


def main(args=None) -> int:
    return run_node(ExpertNode, spin=spin_until_done, args=args)


if __name__ == "__main__":
    sys.exit(main())
