"""Record expert episodes the way they would be recorded on the real robot: over ROS.

``record_episodes_ros`` starts one ``sim_driver`` process and, per seed, one ``expert_node``
process (real DDS on loopback, each with its own participant), and records what crosses the wire
with rclpy ``raw=True`` subscriptions, i.e. the serialized CDR bytes, into one MCAP rosbag2 bag per
episode. The driver is reused across episodes through its ``seed`` parameter and ``~/reset``
service, so an episode costs one expert start plus the episode itself.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from clap_ros import topics as T
from clap_ros.nodes.spawn import NodeProcess, spawn_node

COMMAND_MODES = ("joint_trajectory", "forward_position")


class RecordingError(RuntimeError):
    """Recording could not start or a process failed in a way that loses the episode."""


@dataclass
class EpisodeResult:
    seed: int
    bag: str
    success: bool
    instruction: str
    duration_s: float  # sim time from reset to the end of the episode
    wall_s: float  # wall time for the whole episode, including the expert's start
    expert_exit_code: Optional[int]
    counts: Dict[str, int] = field(default_factory=dict)
    appearance: dict = field(default_factory=dict)
    error: str = ""
    rejected_commands: int = 0
    # from /sim/status while recording: goal distance at the start, the end and the least seen;
    # sim seconds from the start to the first status reporting success
    goal_distance_start_m: Optional[float] = None
    goal_distance_end_m: Optional[float] = None
    goal_distance_min_m: Optional[float] = None
    time_to_success_s: Optional[float] = None
    # the driver's first-point summary (clap_ros.control.first_point) from its last status of
    # the episode (None when that status is another episode's)
    first_point: Optional[dict] = None

    def to_dict(self) -> dict:
        return asdict(self)


def episode_bag_name(robot: str, task: str, seed: int) -> str:
    return "%s_%s_seed%06d" % (robot, task, seed)


class EpisodeRecorder:
    """rclpy side: raw subscriptions written into the current bag, plus the driver's services."""

    def __init__(
        self,
        domain_id: int,
        topics: Dict[str, Tuple[type, object]],
        use_sim_time: bool,
        driver_name: str,
        joint_states_topic: str,
    ):
        import rclpy
        from rcl_interfaces.srv import SetParameters
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from std_srvs.srv import Trigger

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain_id)
        self.node = Node(
            "clap_episode_recorder",
            context=self.ctx,
            parameter_overrides=[
                rclpy.parameter.Parameter(
                    "use_sim_time", rclpy.parameter.Parameter.Type.BOOL, use_sim_time
                )
            ],
        )
        self.lock = threading.Lock()
        self.bag = None
        self.pending = None
        self.start_status: dict = {}
        self.joint_states_topic = joint_states_topic
        self.latest: Dict[str, bytes] = {}
        self.status: dict = {}
        self.status_count = 0
        self.goal_min: Optional[float] = None
        self.first_success_sim_time: Optional[float] = None
        for topic, (msg_type, qos) in topics.items():
            self.node.create_subscription(msg_type, topic, self._callback(topic), qos, raw=True)
        self.reset_client = self.node.create_client(Trigger, "/%s/reset" % driver_name)
        self.param_client = self.node.create_client(
            SetParameters, "/%s/set_parameters" % driver_name
        )
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True, name="recorder_spin")
        self._thread.start()

    def _spin(self):
        from rclpy.executors import ExternalShutdownException

        try:
            while self.ctx.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except (ExternalShutdownException, RuntimeError):
            pass

    def now_ns(self) -> int:
        return max(0, self.node.get_clock().now().nanoseconds)

    def _callback(self, topic: str):
        def cb(data: bytes):
            t = self.now_ns()
            if topic == T.SIM_STATUS:
                self._parse_status(data)
            with self.lock:
                self.latest[topic] = data
                if self.bag is None and self.pending is not None and topic == T.INSTRUCTION:
                    self._start_locked(t)
                if self.bag is not None:
                    self.bag.write_cdr(topic, t, data)

        return cb

    # Written first when a bag starts, so it opens with the current state and a camera frame.
    PRE_ROLL = (T.SIM_STATUS, T.CAMERA_INFO, T.CAMERA_IMAGE, T.WRIST_INFO, T.WRIST_IMAGE)

    def _start_locked(self, t: int) -> None:
        self.bag, self.pending = self.pending, None
        self.start_status = dict(self.status)
        d = self.start_status.get("goal_distance_m")
        self.goal_min = None if d is None else float(d)
        self.first_success_sim_time = None
        for topic in self.PRE_ROLL + (self.joint_states_topic,):
            if topic in self.latest and topic in self.bag.topics:
                self.bag.write_cdr(topic, t, self.latest[topic])

    def arm_bag(self, bag) -> None:
        """Start writing into ``bag`` when the expert's instruction arrives (episode start)."""
        with self.lock:
            self.pending = bag

    def start_now(self) -> bool:
        """Start the armed bag if the instruction never came; True if it had to."""
        with self.lock:
            if self.bag is None and self.pending is not None:
                self._start_locked(self.now_ns())
                return True
            return False

    def _parse_status(self, data: bytes) -> None:
        from rclpy.serialization import deserialize_message
        from std_msgs.msg import String

        try:
            status = json.loads(deserialize_message(data, String).data)
        except ValueError:
            return
        with self.lock:
            self.status = status
            self.status_count += 1
            if self.bag is not None and status.get("resets") == self.start_status.get("resets"):
                d = status.get("goal_distance_m")
                if d is not None and (self.goal_min is None or float(d) < self.goal_min):
                    self.goal_min = float(d)
                if status.get("success") and self.first_success_sim_time is None:
                    self.first_success_sim_time = float(status.get("sim_time", 0.0))

    def call(self, client, request, timeout: float):
        if not client.wait_for_service(timeout_sec=timeout):
            raise RecordingError(
                "service %s not available after %.0f s" % (client.srv_name, timeout)
            )
        fut = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not fut.done():
            raise RecordingError("service %s did not answer in %.0f s" % (client.srv_name, timeout))
        return fut.result()

    def set_seed(self, seed: int, timeout: float) -> None:
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        req = SetParameters.Request(
            parameters=[
                Parameter(
                    name="seed",
                    value=ParameterValue(
                        type=ParameterType.PARAMETER_INTEGER, integer_value=int(seed)
                    ),
                )
            ]
        )
        res = self.call(self.param_client, req, timeout)
        if not res.results[0].successful:
            raise RecordingError("driver refused seed %d: %s" % (seed, res.results[0].reason))

    def reset(self, timeout: float) -> str:
        from std_srvs.srv import Trigger

        res = self.call(self.reset_client, Trigger.Request(), timeout)
        if not res.success:
            raise RecordingError("driver reset failed: %s" % res.message)
        return res.message

    def wait_status(self, predicate, timeout: float) -> Optional[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                st = dict(self.status)
            if st and predicate(st):
                return st
            time.sleep(0.01)
        return None

    def stop_bag(self) -> None:
        with self.lock:
            self.bag = None
            self.pending = None

    def close(self) -> None:
        self.stop_bag()
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            self.ctx.try_shutdown()
            self._thread.join(timeout=2.0)


def recorded_topics(profile, command_mode: str, wrist_camera: bool):
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from std_msgs.msg import Float64MultiArray, String
    from trajectory_msgs.msg import JointTrajectory

    from clap_ros.nodes.common import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS

    drv = profile.driver
    topics = {
        T.CAMERA_IMAGE: (Image, SENSOR_QOS, T.TYPES["image"]),
        T.CAMERA_INFO: (CameraInfo, SENSOR_QOS, T.TYPES["camera_info"]),
        drv.joint_states_topic: (JointState, STATE_QOS, T.TYPES["joint_state"]),
        drv.gripper_command_topic: (Float64MultiArray, COMMAND_QOS, T.TYPES["float64_array"]),
        T.INSTRUCTION: (String, LATCHED_QOS, T.TYPES["string"]),
        T.SIM_STATUS: (String, LATCHED_QOS, T.TYPES["string"]),
    }
    if command_mode == "joint_trajectory":
        topics[drv.trajectory_topic] = (JointTrajectory, COMMAND_QOS, T.TYPES["joint_trajectory"])
    else:
        topics[drv.forward_topic] = (Float64MultiArray, COMMAND_QOS, T.TYPES["float64_array"])
    if wrist_camera:
        topics[T.WRIST_IMAGE] = (Image, SENSOR_QOS, T.TYPES["image"])
        topics[T.WRIST_INFO] = (CameraInfo, SENSOR_QOS, T.TYPES["camera_info"])
    return topics


def record_episodes_ros(
    robot: str,
    task: str,
    seeds: Sequence[int],
    out_dir,
    command_mode: str = "joint_trajectory",
    camera_size: Tuple[int, int] = (128, 128),
    camera_rate_hz: float = 15.0,
    randomize: bool = True,
    wrist_camera: bool = False,
    real_time_factor: float = 1.0,
    domain_id: Optional[int] = None,
    episode_timeout_s: float = 120.0,
    startup_timeout_s: float = 90.0,
    settle_s: float = 0.5,
    progress: bool = True,
    log_dir=None,
    expert_nice: int = 0,
) -> List[EpisodeResult]:
    """Record one MCAP bag per seed under ``out_dir`` (named ``<robot>_<task>_seed<NNNNNN>``).

    ``camera_size`` is (width, height). ``real_time_factor`` 0 runs the sim as fast as it can;
    any value other than 1 puts every process on sim time (they follow /clock). Returns one
    EpisodeResult per seed; an episode whose expert fails is kept (its bag says so in
    /clap/episode_outcome) and marked with ``error``. Raises RecordingError (nothing written
    for that seed) if the driver cannot start. ``domain_id`` None: $ROS_DOMAIN_ID, else a
    random one. ``expert_nice`` lowers the expert processes' CPU priority (their start-up
    overlaps the previous episode).
    """
    from rclpy.serialization import serialize_message
    from std_msgs.msg import String

    from clap_ros.data.bags import BagWriter
    from clap_ros.robots import load_profile

    if command_mode not in COMMAND_MODES:
        raise ValueError("command_mode must be one of %s, not %r" % (COMMAND_MODES, command_mode))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seeds to record")
    if len(set(seeds)) != len(seeds):
        raise ValueError("duplicate seeds %s" % sorted({s for s in seeds if seeds.count(s) > 1}))
    profile = load_profile(robot)
    out_dir = Path(out_dir)
    bag_paths = [out_dir / episode_bag_name(profile.name, task, s) for s in seeds]
    existing = [str(p) for p in bag_paths if p.exists()]
    if existing:
        raise RecordingError("bags already exist (never overwritten): %s" % ", ".join(existing))
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = Path(log_dir) if log_dir else out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    if domain_id is None:
        domain_id = int(os.environ.get("ROS_DOMAIN_ID") or random.SystemRandom().randint(1, 100))
    # Off real time every process follows /clock: a driver that cannot keep up (or is slowed on
    # purpose) then slows the expert's timing with it instead of leaving it behind.
    use_sim_time = real_time_factor != 1.0
    width, height = int(camera_size[0]), int(camera_size[1])
    common = {
        "robot": robot,
        "task": task,
        "randomize": bool(randomize),
        "use_sim_time": use_sim_time,
    }
    driver = spawn_node(
        "clap_ros.nodes.sim_driver",
        name="sim_driver",
        domain_id=domain_id,
        log_path=log_dir / "sim_driver.log",
        params=dict(
            common,
            seed=seeds[0],
            camera_width=width,
            camera_height=height,
            camera_rate_hz=float(camera_rate_hz),
            wrist_camera=bool(wrist_camera),
            real_time_factor=float(real_time_factor),
        ),
    )
    topics = recorded_topics(profile, command_mode, wrist_camera)
    recorder = None
    next_expert = None
    results: List[EpisodeResult] = []
    try:
        recorder = EpisodeRecorder(
            domain_id,
            {k: (v[0], v[1]) for k, v in topics.items()},
            use_sim_time,
            "sim_driver",
            profile.driver.joint_states_topic,
        )
        if not recorder.reset_client.wait_for_service(timeout_sec=startup_timeout_s):
            raise RecordingError(
                "sim_driver did not come up in %.0f s; its log:\n%s"
                % (startup_timeout_s, driver.log_text(tail=3000))
            )
        if recorder.wait_status(lambda s: True, timeout=startup_timeout_s) is None:
            raise RecordingError(
                "no /sim/status from sim_driver in %.0f s; its log:\n%s"
                % (startup_timeout_s, driver.log_text(tail=3000))
            )
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(seeds), desc="recording %s/%s" % (robot, task), unit="episode")

        def start_expert(i):
            # The expert waits until the driver reports its seed after the reset of episode i
            # (the driver's i+1-th), so it can be started (python, imports, plan, DDS discovery:
            # seconds) while the previous episode still runs.
            return spawn_node(
                "clap_ros.nodes.expert_node",
                name="expert_node",
                domain_id=domain_id,
                log_path=log_dir / ("expert_seed%06d.log" % seeds[i]),
                nice=expert_nice,
                params=dict(
                    common,
                    seed=seeds[i],
                    command_mode=command_mode,
                    settle_s=settle_s,
                    wait_for_seed=True,
                    min_resets=resets0 + i + 1,
                    # the driver and this recorder: no command goes unrecorded
                    min_subscribers=2,
                ),
            )

        with recorder.lock:
            resets0 = int(recorder.status.get("resets", 0))
        next_expert = start_expert(0)
        for i, (seed, bag_path) in enumerate(zip(seeds, bag_paths)):
            if not driver.running():
                raise RecordingError(
                    "sim_driver exited (code %s); its log:\n%s"
                    % (driver.returncode, driver.log_text(tail=3000))
                )
            expert, next_expert = next_expert, None
            try:
                started = []
                try:
                    results.append(
                        _record_one(
                            recorder,
                            expert,
                            profile,
                            task,
                            seed,
                            bag_path,
                            topics,
                            command_mode,
                            episode_timeout_s,
                            lambda: (
                                started.append(start_expert(i + 1)) if i + 1 < len(seeds) else None
                            ),
                            BagWriter,
                            serialize_message,
                            String,
                        )
                    )
                finally:
                    next_expert = started[0] if started else None
            finally:
                if expert.running():
                    expert.stop()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(success="%d/%d" % (sum(r.success for r in results), len(results)))
        if bar is not None:
            bar.close()
    finally:
        if next_expert is not None:
            next_expert.stop()
        if recorder is not None:
            recorder.close()
        driver.stop()
    return results


def _record_one(
    recorder: EpisodeRecorder,
    expert: NodeProcess,
    profile,
    task: str,
    seed: int,
    bag_path: Path,
    topics,
    command_mode: str,
    episode_timeout_s: float,
    start_next,
    BagWriter,
    serialize_message,
    String,
) -> EpisodeResult:
    wall0 = time.monotonic()
    recorder.set_seed(seed, timeout=30.0)
    resets_before = recorder.status.get("resets", -1)
    error = ""
    rc: Optional[int] = None
    with BagWriter(bag_path) as bag:
        for topic, (_, _, msgtype) in topics.items():
            bag.add_topic(topic, msgtype)
        bag.add_topic(T.EPISODE_OUTCOME, T.TYPES["string"])
        for k, v in (
            ("robot", profile.name),
            ("task", task),
            ("seed", seed),
            ("command_mode", command_mode),
        ):
            bag.set_custom_data(k, str(v))
        try:
            # The bag starts when the expert announces its instruction, i.e. as it starts moving.
            # Armed before the reset: the expert (already up, waiting for this seed) may start
            # the moment the driver reports the seed, before this thread sees that status.
            # The previous expert has exited, so no other instruction can arrive meanwhile.
            recorder.arm_bag(bag)
            recorder.reset(timeout=60.0)
            if (
                recorder.wait_status(
                    lambda s: s.get("seed") == seed and s.get("resets", 0) > resets_before,
                    timeout=10.0,
                )
                is None
            ):
                raise RecordingError("no /sim/status for seed %d after reset" % seed)
            start_next()
            rc = expert.wait(timeout=episode_timeout_s)
            if rc is None:
                error = "expert did not finish within %.0f s" % episode_timeout_s
                rc = expert.stop()
            elif rc != 0:
                error = "expert exited with code %d: %s" % (rc, expert.log_text(tail=1500))
            # Success changes are pushed at once; a short wait lets the last ones arrive.
            time.sleep(0.15)
            if recorder.start_now() and not error:
                error = "the expert's /clap/instruction never reached the recorder"
            with recorder.lock:
                status = dict(recorder.status)
                start = dict(recorder.start_status)
                goal_min = recorder.goal_min
                first_success = recorder.first_success_sim_time
        finally:
            recorder.stop_bag()
        outcome = {
            "robot": profile.name,
            "task": task,
            "seed": seed,
            "instruction": status.get("instruction", ""),
            "success": bool(status.get("success", False)) and not error,
            # sim time from the expert's start to the end of the recording
            "duration": float(status.get("sim_time", 0.0)) - float(start.get("sim_time", 0.0)),
            "appearance": status.get("appearance", {}),
            "command_mode": command_mode,
            "rejected_commands": int(status.get("rejected_commands", 0))
            - int(start.get("rejected_commands", 0)),
            "error": error,
        }
        bag.write_cdr(
            T.EPISODE_OUTCOME,
            recorder.now_ns(),
            serialize_message(String(data=json.dumps(outcome, sort_keys=True))),
        )
        counts = bag.counts

    def dist(st):
        return None if st.get("goal_distance_m") is None else float(st["goal_distance_m"])

    end_d = dist(status)
    return EpisodeResult(
        seed=seed,
        bag=str(bag_path),
        success=outcome["success"],
        instruction=outcome["instruction"],
        duration_s=outcome["duration"],
        wall_s=time.monotonic() - wall0,
        expert_exit_code=rc,
        counts=counts,
        appearance=outcome["appearance"],
        error=error,
        rejected_commands=outcome["rejected_commands"],
        goal_distance_start_m=dist(start),
        goal_distance_end_m=end_d,
        goal_distance_min_m=min([d for d in (goal_min, end_d) if d is not None], default=None),
        time_to_success_s=None
        if first_success is None
        else first_success - float(start.get("sim_time", 0.0)),
        first_point=status.get("first_point")
        if status.get("resets") == start.get("resets")
        else None,
    )


# the names they had before they were public (tests/unit/test_record.py imports this one)
_recorded_topics = recorded_topics
