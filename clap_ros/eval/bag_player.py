"""``clap-ros eval-bag --mode ros``: a bag player + recorder around the real CLAP nodes.

encoder_node, planner_node and action_node run as separate processes (clap_ros.nodes.spawn) on
sim time. This process publishes ``/clock`` and the bag's camera, camera_info, joint_states and
instruction at the recorded pace (scaled by ``--rate``), and records everything the stack
publishes (/clap/latent, /clap/plan_tokens, /clap/plan, /clap/diagnostics, the arm and gripper
commands) into a new MCAP bag with the *input bag's* log times, so both bags line up.

Nothing drives an arm: the action node is enabled on start and its commands are only recorded.
ROS time = bag time + ``offset`` (a bag recorded on the sim clock starts at 0, and ROS time 0
means "no time yet" to a node on sim time); header stamps are shifted by the same offset.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from clap_ros import topics as T
from clap_ros.eval.bag_data import (
    BagData,
    BagEvalConfig,
    BagEvalError,
    Replay,
    counts_from_diagnostics,
    decode_image,
    hdr_ns,
    node_params,
    stack_params,
    stamp_s,
)

CLOCK_PERIOD_S = 0.005  # sim-time spacing of /clock while waiting for the next message
STARTUP_TIMEOUT_S = 180.0  # three nodes loading ONNX graphs on a loaded 2-core machine
DRAIN_S = 1.0  # wall time after the last message for in-flight outputs
NATIVE_ENCODINGS = ("rgb8", "bgr8", "mono8")


def _offset_ns(start_ns: int) -> int:
    return 1000 * 1_000_000_000 if start_ns < 100 * 1_000_000_000 else 0


def replay_ros(
    data: BagData, profile, cfg: BagEvalConfig, model_dir: Path, out_dir: Path
) -> Replay:
    """Play ``data``'s bag into freshly spawned nodes; returns the Replay read back from the
    recorded output bag (``out_dir/replay``)."""
    from clap_ros.nodes.spawn import spawn_node

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_bag = out_dir / "replay"
    if out_bag.exists():
        raise BagEvalError(
            "output bag %s exists (bags are never overwritten): choose another --out" % out_bag
        )
    domain = cfg.domain_id
    if domain is None:
        env = os.environ.get("ROS_DOMAIN_ID", "")
        domain = int(env) if env.isdigit() else random.SystemRandom().randint(1, 100)
    sp = stack_params(cfg, data, profile)
    mode = sp.action.command_mode
    params = node_params(sp, model_dir)
    logs = out_dir / "logs"
    # the same parameters as the offline replay (clap_ros.eval.bag_data.stack_params)
    specs = [(name, params[name]) for name in ("encoder_node", "planner_node", "action_node")]
    procs = []
    player = None
    wall0 = time.perf_counter()
    try:
        for name, node_p in specs:
            procs.append(
                spawn_node(
                    "clap_ros.nodes.%s" % name,
                    name=name,
                    params=node_p,
                    domain_id=domain,
                    log_path=logs / ("%s.log" % name),
                )
            )
        player = _Player(data, profile, mode, domain, out_bag)
        player.wait_ready(procs)
        player.play(cfg.rate, progress=cfg.progress)
        time.sleep(DRAIN_S)
    finally:
        codes = [p.stop() for p in procs]
        if player is not None:
            player.close()
    rep = read_replay(out_bag, mode, player.offset_ns, player.arm_topic, player.grip_topic)
    rep.wall_s = time.perf_counter() - wall0
    rep.output_bag = str(out_bag)
    rep.extra["node_exit_codes"] = {n: c for (n, _), c in zip(specs, codes)}
    rep.extra["node_logs"] = str(logs)
    return rep


class _Player:
    def __init__(self, data: BagData, profile, command_mode: str, domain: int, out_bag: Path):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from std_msgs.msg import Float64MultiArray, Int32MultiArray, String
        from trajectory_msgs.msg import JointTrajectory

        from clap_ros.data.bags import BagWriter
        from clap_ros.nodes.common import CLOCK_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS

        self.data = data
        self.offset_ns = _offset_ns(data.start_ns)
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = Node("bag_player", context=self.ctx)
        drv = profile.driver
        self.js_topic = drv.joint_states_topic
        self.pub = {
            "camera": self.node.create_publisher(Image, T.CAMERA_IMAGE, SENSOR_QOS),
            "camera_info": self.node.create_publisher(CameraInfo, T.CAMERA_INFO, SENSOR_QOS),
            "joint_states": self.node.create_publisher(JointState, self.js_topic, STATE_QOS),
            "instruction": self.node.create_publisher(String, T.INSTRUCTION, LATCHED_QOS),
        }
        self.clock_pub = self.node.create_publisher(Clock, T.CLOCK, CLOCK_QOS)
        self._Clock = Clock
        self.clock_ns = data.start_ns + self.offset_ns
        arm_topic = (
            drv.forward_topic if command_mode == "forward_position" else drv.trajectory_topic
        )
        arm_type = Float64MultiArray if command_mode == "forward_position" else JointTrajectory
        self.record = [
            (T.LATENT, Image),
            (T.PLAN_TOKENS, Int32MultiArray),
            (T.PLAN, JointTrajectory),
            (T.DIAGNOSTICS, DiagnosticArray),
            (arm_topic, arm_type),
            (drv.gripper_command_topic, Float64MultiArray),
        ]
        self.arm_topic, self.grip_topic = arm_topic, drv.gripper_command_topic
        self.lock = threading.Lock()
        self.writer = BagWriter(out_bag)
        self.writer.open()
        self.writer.set_custom_data("recorder", "clap-ros eval-bag --mode ros")
        self.writer.set_custom_data("source_bag", str(data.path))
        self.writer.set_custom_data("time_offset_ns", str(self.offset_ns))
        for topic, typ in self.record:
            msgtype = "%s/msg/%s" % (typ.__module__.split(".")[0], typ.__name__)
            self.writer.add_topic(topic, msgtype)
            self.node.create_subscription(typ, topic, self._recorder(topic), STATE_QOS, raw=True)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._spin.start()

    def _spin_loop(self) -> None:
        while self.ctx.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if not self.ctx.ok():
                    return
                raise

    def _recorder(self, topic: str):
        def cb(raw: bytes) -> None:
            with self.lock:
                if self.writer is not None:
                    # log time on the input bag's clock, so output and input bags line up
                    self.writer.write_cdr(topic, max(self.clock_ns - self.offset_ns, 0), raw)

        return cb

    def publish_clock(self, ns: int) -> None:
        from builtin_interfaces.msg import Time

        from clap_ros.rostime import ns_sec_nanosec

        self.clock_ns = max(self.clock_ns, int(ns))
        sec, nsec = ns_sec_nanosec(self.clock_ns)
        self.clock_pub.publish(self._Clock(clock=Time(sec=sec, nanosec=nsec)))

    def wait_ready(self, procs) -> None:
        """Until every node runs and is connected (subscribed to our inputs, publishing what we
        record); /clock ticks meanwhile so the nodes have a time."""
        node = self.node

        def ready() -> bool:
            return (
                self.pub["camera"].get_subscription_count() >= 1
                and self.pub["joint_states"].get_subscription_count() >= 2
                and self.pub["instruction"].get_subscription_count() >= 1
                and all(node.count_publishers(t) >= 1 for t, _ in self.record if t != T.DIAGNOSTICS)
            )

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            for p in procs:
                if not p.running():
                    raise BagEvalError(
                        "%s exited (code %s) during start-up:\n%s"
                        % (p.name, p.returncode, p.log_text(tail=1500))
                    )
            self.publish_clock(self.clock_ns)
            if ready():
                time.sleep(0.5)  # let DDS finish matching the reliable endpoints both ways
                return
            time.sleep(0.05)
        raise BagEvalError(
            "the nodes were not connected after %.0f s; logs: %s"
            % (STARTUP_TIMEOUT_S, ", ".join(str(p.log_path) for p in procs))
        )

    def play(self, rate: Optional[float], progress: bool = True) -> None:
        from tqdm import tqdm

        from clap_ros.data.bags import BagReader, deserialize, image_msg, serialize, stamp

        d, tp = self.data, self.data.topics
        names = {
            tp.camera: "camera",
            tp.camera_info: "camera_info",
            tp.joint_states: "joint_states",
            tp.instruction: "instruction",
        }
        from_topic = d.instruction_source == "topic"
        if not from_topic:
            self._publish_instruction(d.instructions[0][1])
        topics = (
            [tp.camera, tp.joint_states]
            + ([tp.camera_info] if d.has_camera_info else [])
            + ([tp.instruction] if from_topic else [])
        )
        w0 = time.perf_counter()
        bar = tqdm(
            total=len(d.image_t),
            desc="ros replay %s" % d.path.name,
            unit="frame",
            disable=not progress,
            leave=False,
        )
        with BagReader(d.path) as r:
            for topic, msgtype, ts, data in r.raw_messages(topics):
                if rate is not None:
                    target = w0 + (ts - d.start_ns) * 1e-9 / rate
                    while True:
                        now = time.perf_counter()
                        if now >= target:
                            break
                        self.publish_clock(
                            d.start_ns + self.offset_ns + int((now - w0) * rate * 1e9)
                        )
                        time.sleep(min(CLOCK_PERIOD_S / rate, target - now))
                self.publish_clock(ts + self.offset_ns)
                kind = names[topic]
                if kind == "instruction":
                    self._publish_instruction(str(deserialize(data, msgtype).data))
                    continue
                msg = deserialize(data, msgtype)
                new_ns = int(round(stamp_s(hdr_ns(msg), ts) * 1e9)) + self.offset_ns
                if kind == "camera":
                    bar.update(1)
                    if msgtype.endswith("/Image") and msg.encoding in NATIVE_ENCODINGS:
                        msg.header.stamp = stamp(new_ns)
                    else:  # the encoder takes rgb8/bgr8/mono8 Images only
                        msg = image_msg(decode_image(msg, msgtype), new_ns, msg.header.frame_id)
                        msgtype = "sensor_msgs/msg/Image"
                else:
                    msg.header.stamp = stamp(new_ns)
                self.pub[kind].publish(serialize(msg, msgtype))
        bar.close()
        end = d.end_ns + self.offset_ns
        while self.clock_ns < end and rate is not None:
            time.sleep(CLOCK_PERIOD_S / rate)
            self.publish_clock(min(end, self.clock_ns + int(CLOCK_PERIOD_S * 1e9)))
        self.publish_clock(end)

    def _publish_instruction(self, text: str) -> None:
        from std_msgs.msg import String

        self.pub["instruction"].publish(String(data=text))

    def close(self) -> None:
        with self.lock:
            w, self.writer = self.writer, None
        if w is not None:
            w.close()
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            self.ctx.try_shutdown()
            self._spin.join(timeout=2.0)


def read_replay(
    out_bag: Path, command_mode: str, offset_ns: int, arm_topic: str, grip_topic: str
) -> Replay:
    """The stack's outputs from a recorded replay bag, as a Replay on the input bag's clock."""
    from clap_ros.data.bags import BagReader
    from clap_ros.nodes.diagnostics import status_values

    rep = Replay(
        mode="ros",
        command_mode=command_mode,
        latency_source="estimate: for each latent, its camera stamp -> the first arm "
        "command after it arrived (latents followed by another before "
        "any command are skipped)",
    )
    latents: List[tuple] = []
    diag: Dict[str, Any] = {}
    states: List[str] = []
    with BagReader(out_bag) as r:
        for topic, msgtype, ts, msg in r.messages():
            if topic == T.LATENT:
                latents.append((ts, hdr_ns(msg) - offset_ns))
                rep.latents += 1
            elif topic == T.PLAN:
                rep.plans += 1
            elif topic == arm_topic:
                if msgtype.endswith("JointTrajectory"):
                    rep.arm.append((ts, "traj", msg))
                else:
                    rep.arm.append((ts, "fwd", np.asarray(msg.data, dtype=np.float64)))
            elif topic == grip_topic and len(msg.data):
                rep.gripper.append((ts, float(np.clip(msg.data[0], 0.0, 1.0))))
            elif topic == T.DIAGNOSTICS:
                for st in msg.status:
                    if st.name.endswith("action_node"):
                        diag = status_values(st)
                        states.append(str(diag.get("state", "")))
    cmd_t = np.array([t for t, _, _ in rep.arm], dtype=np.int64)
    for k, (arrived, stamp_ns) in enumerate(latents):
        i = int(np.searchsorted(cmd_t, arrived, side="left"))
        if i >= cmd_t.size:
            break
        if k + 1 < len(latents) and latents[k + 1][0] <= cmd_t[i]:
            continue
        rep.latency_s.append((cmd_t[i] - stamp_ns) * 1e-9)
    rep.counts = counts_from_diagnostics(diag)
    # /clap/diagnostics is a 1 Hz snapshot: a stop shorter than a second can hide between two.
    rep.counts["watchdog_stops"] = sum(
        1 for a, b in zip(states, states[1:]) if a == "run" and b != "run"
    )
    rep.stops = []
    for k in (
        "frame_to_command_p50_ms",
        "frame_to_command_p99_ms",
        "state",
        "reason",
        "tick_rate_hz",
    ):
        if k in diag:
            rep.extra["diagnostics_%s" % k] = diag[k]
    return rep
