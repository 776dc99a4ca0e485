"""sim_driver: the MuJoCo world behind the same ROS interface as the real arm drivers.

Publishes ``/joint_states`` (arm + gripper joints, named as the real driver names them), the scene
camera (``/camera/image_raw`` rgb8 + ``/camera/camera_info``, sensor-data QoS), ``/clock`` when on
sim time, and ``/sim/status`` (JSON, transient-local). Accepts the commands a ros2_control driver
accepts: ``<trajectory_controller>/joint_trajectory`` (JointTrajectoryController rules, a new message
replaces the running one), ``<forward_controller>/commands`` (one position per arm joint, profile
order) and the gripper topic (one opening, 0 closed .. 1 open). A bad command is rejected with a
logged reason and the arm keeps its last safe target. ``~/reset`` (std_srvs/Trigger) resets the
world to the ``seed`` parameter, which can be changed at run time.

Physics and publishing run on their own thread, paced against the wall clock by absolute deadlines
(``real_time_factor`` 1.0 = real time; 0 = as fast as possible, which needs ``use_sim_time``).
"""
from __future__ import annotations

import array
import collections
import dataclasses
import json
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from clap_ros import topics as T
from clap_ros.control.trajectory import (TrajectoryFollower, TrajectoryRejected, TrajectoryRules,
                                         points_from_msg, validate_gripper_command)
from clap_ros.nodes.common import (COMMAND_QOS, CLOCK_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS,
                                   ParameterError, RateLimitedLog, declare, run_node, stamp_from_s)
from clap_ros.nodes.common import declare_robot
from clap_ros.robots import load_profile

NODE_NAME = "sim_driver"
# If the sim falls this far behind the wall clock it stops trying to catch up (a burst of
# un-paced steps would be a time jump for everyone listening) and re-anchors its pacing.
MAX_LAG_S = 0.25


@dataclass(frozen=True)
class SimDriverConfig:
    robot: str = "fr3"
    task: str = "pick_place"
    seed: int = 0
    randomize: bool = True
    camera_width: int = 128
    camera_height: int = 128
    camera_rate_hz: float = 15.0
    wrist_camera: bool = False
    joint_states_rate_hz: float = 0.0      # 0: the profile's driver rate for /joint_states
    control_rate_hz: float = 0.0           # 0: the profile's driver rate (1 kHz Franka, 500 Hz UR)
    clock_rate_hz: float = 100.0
    status_rate_hz: float = 2.0
    real_time_factor: float = 1.0
    use_sim_time: bool = False
    allow_partial_joints_goal: bool = False
    allow_nonzero_velocity_at_trajectory_end: bool = False
    position_margin: float = 0.0
    max_forward_step: float = 0.25
    trajectory_controller: str = ""        # "": from the profile
    forward_controller: str = ""
    gripper_command_topic: str = ""
    camera_info_file: str = ""             # camera_info_manager YAML published for the scene camera
    camera_info: Optional[dict] = None     # loaded from camera_info_file


def load_camera_info_file(path: str, width: int, height: int) -> dict:
    """The scene camera's CameraInfo fields from a camera_info_manager YAML (as a real camera
    driver's camera_info_url), e.g. one written by `clap-ros calibrate intrinsics`."""
    from clap_ros.calibration.yaml_io import CalibrationInputError, read_camera_info
    try:
        cal = read_camera_info(path)
    except CalibrationInputError as e:
        raise ParameterError("parameter 'camera_info_file' = %r: %s" % (path, e)) from None
    if (cal.width, cal.height) != (width, height):
        raise ParameterError("parameter 'camera_info_file' = %r: calibrated at %dx%d, the camera "
                             "renders %dx%d (set camera_width/camera_height to match)"
                             % (path, cal.width, cal.height, width, height))
    K = np.asarray(cal.K, dtype=float).reshape(3, 3)
    D = np.asarray(cal.D, dtype=float).reshape(-1)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return {"width": width, "height": height, "K": K, "D": D, "R": np.eye(3), "P": P,
            "distortion_model": "rational_polynomial" if D.size == 8 else "plumb_bob",
            "frame_id": "scene_camera_optical_frame"}


def declare_parameters(node: Node) -> SimDriverConfig:
    d = SimDriverConfig()
    ro = dict(read_only=True)
    robot, profile = declare_robot(node, d.robot, read_only=True)
    from clap_ros.sim import TASKS
    cfg = SimDriverConfig(
        robot=robot,
        task=declare(node, "task", d.task, "sim task", choices=list(TASKS), **ro),
        seed=declare(node, "seed", d.seed, "layout/appearance seed used by ~/reset (settable)",
                     min_value=0, max_value=2**31 - 1),
        randomize=declare(node, "randomize", d.randomize,
                          "visual randomisation (textures, lights, distractors) per seed", **ro),
        camera_width=declare(node, "camera_width", d.camera_width, "scene camera width, px",
                             min_value=16, max_value=4096, **ro),
        camera_height=declare(node, "camera_height", d.camera_height, "scene camera height, px",
                              min_value=16, max_value=4096, **ro),
        camera_rate_hz=declare(node, "camera_rate_hz", d.camera_rate_hz,
                               "camera frame rate in sim time, Hz (0 = no camera)",
                               min_value=0.0, max_value=240.0, **ro),
        wrist_camera=declare(node, "wrist_camera", d.wrist_camera,
                             "also publish /wrist_camera/image_raw + camera_info", **ro),
        joint_states_rate_hz=declare(
            node, "joint_states_rate_hz", d.joint_states_rate_hz,
            "/joint_states rate in sim time, Hz (0 = the profile's: %g)"
            % profile.driver.joint_states_rate_hz, min_value=0.0, max_value=1000.0, **ro),
        control_rate_hz=declare(
            node, "control_rate_hz", d.control_rate_hz,
            "controller update rate, Hz (0 = the profile's driver rate: %g)" % profile.driver.rate_hz,
            min_value=0.0, max_value=10000.0, **ro),
        clock_rate_hz=declare(node, "clock_rate_hz", d.clock_rate_hz,
                              "/clock rate in sim time when use_sim_time, Hz",
                              min_value=1.0, max_value=1000.0, **ro),
        status_rate_hz=declare(node, "status_rate_hz", d.status_rate_hz,
                               "/sim/status rate, Hz (also sent on reset, success and rejection)",
                               min_value=0.1, max_value=100.0, **ro),
        real_time_factor=declare(node, "real_time_factor", d.real_time_factor,
                                 "sim seconds per wall second; 0 = as fast as possible "
                                 "(needs use_sim_time)", min_value=0.0, max_value=100.0, **ro),
        use_sim_time=bool(node.get_parameter("use_sim_time").value),
        allow_partial_joints_goal=declare(
            node, "allow_partial_joints_goal", d.allow_partial_joints_goal,
            "accept trajectories naming a subset of the joints (others hold)", **ro),
        allow_nonzero_velocity_at_trajectory_end=declare(
            node, "allow_nonzero_velocity_at_trajectory_end",
            d.allow_nonzero_velocity_at_trajectory_end,
            "accept a last trajectory point with non-zero velocity", **ro),
        position_margin=declare(node, "position_margin", d.position_margin,
                                "commands must stay this far inside the joint limits, rad",
                                min_value=0.0, max_value=0.5, **ro),
        max_forward_step=declare(node, "max_forward_step", d.max_forward_step,
                                 "largest accepted jump of a forward command, rad",
                                 min_value=0.0, max_value=10.0, **ro),
        trajectory_controller=declare(
            node, "trajectory_controller", d.trajectory_controller,
            "JointTrajectoryController name ('' = profile's: %s)"
            % profile.driver.trajectory_controller, **ro),
        forward_controller=declare(
            node, "forward_controller", d.forward_controller,
            "forward position controller name ('' = profile's: %s)"
            % profile.driver.forward_controller, **ro),
        gripper_command_topic=declare(
            node, "gripper_command_topic", d.gripper_command_topic,
            "gripper command topic ('' = profile's: %s)" % profile.driver.gripper_command_topic,
            **ro),
        camera_info_file=declare(
            node, "camera_info_file", d.camera_info_file,
            "camera_info_manager YAML published as the scene camera's CameraInfo, as a real "
            "camera driver's camera_info_url ('' = the ideal pinhole of the sim camera)", **ro),
    )
    if cfg.camera_info_file:
        cfg = dataclasses.replace(cfg, camera_info=load_camera_info_file(
            cfg.camera_info_file, cfg.camera_width, cfg.camera_height))
    if cfg.real_time_factor == 0.0 and not cfg.use_sim_time:
        raise ParameterError("real_time_factor 0 (as fast as possible) needs use_sim_time:=true, "
                             "or other nodes' wall-clock timing would not match the sim")
    return cfg


def camera_info_msg(info: dict, stamp) -> CameraInfo:
    msg = CameraInfo()
    msg.header.stamp = stamp
    msg.header.frame_id = str(info.get("frame_id", "camera_optical_frame"))
    msg.width = int(info["width"])
    msg.height = int(info["height"])
    msg.distortion_model = str(info.get("distortion_model", "plumb_bob"))
    msg.d = [float(x) for x in np.asarray(info.get("D", [0.0] * 5)).ravel()]
    msg.k = [float(x) for x in np.asarray(info["K"]).ravel()]
    msg.r = [float(x) for x in np.asarray(info.get("R", np.eye(3))).ravel()]
    msg.p = [float(x) for x in np.asarray(info["P"]).ravel()]
    return msg


def image_msg(rgb: np.ndarray, stamp, frame_id: str) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
    msg.data = data
    return msg


class CameraWorker:
    """Renders on its own thread from a snapshot of the sim state, so physics keeps real time.

    Software GL renders a frame in 15-100 ms; inline, that stalls the controller. The stepping
    thread offers a frame at each camera tick (a cheap copy of MjData); if the previous frame is
    still rendering the new one is dropped and counted, so a published frame is never stale.
    """

    def __init__(self, world, cameras, logger, alive=lambda: True,
                 scene_info: Optional[dict] = None):
        import mujoco
        self._scene_info = scene_info   # a calibration file's CameraInfo instead of the ideal one
        self._alive = alive
        self._mj = mujoco
        self.world = world
        self.model = world.model
        self.cameras = cameras  # [(name, image publisher, info publisher)]
        self.snap = mujoco.MjData(self.model)
        self.model_lock = threading.Lock()  # held while the scene reads the model (resets write it)
        self._cond = threading.Condition()
        self._job = None
        self._busy = False
        self._stop = False
        self.rendered = 0
        self.dropped = 0
        self.error: Optional[BaseException] = None
        self._logger = logger
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim_camera", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            raise self.error

    def offer(self, data, stamp, wait: bool = False) -> bool:
        """Queue a frame of ``data`` now; ``wait`` blocks until the renderer is free instead of
        dropping (as fast as possible on sim time, every frame is wanted)."""
        with self._cond:
            if wait:
                self._cond.wait_for(lambda: self._stop or not (self._busy or self._job))
            if self._busy or self._job is not None:
                self.dropped += 1
                return False
            self._mj.mj_copyData(self.snap, self.model, data)
            infos = [self._scene_info if name == "scene" and self._scene_info is not None
                     else self.world.camera_info(name) for name, _, _ in self.cameras]
            self._job = (stamp, infos)
            self._cond.notify()
            return True

    def _run(self) -> None:
        try:
            h, w = self.world.image_size
            renderer = self._mj.Renderer(self.model, h, w)
        except Exception as e:
            self.error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                with self._cond:
                    while self._job is None and not self._stop:
                        self._cond.wait()
                    if self._stop:
                        return
                    stamp, infos = self._job
                    self._job = None
                    self._busy = True
                try:
                    for (name, pub_img, pub_info), info in zip(self.cameras, infos):
                        with self.model_lock:
                            renderer.update_scene(self.snap, camera=name)
                        rgb = renderer.render()
                        frame = str(info.get("frame_id", "%s_camera_optical_frame" % name))
                        pub_img.publish(image_msg(rgb, stamp, frame))
                        pub_info.publish(camera_info_msg(info, stamp))
                    self.rendered += 1
                except Exception as e:
                    if not self._stop and self._alive():
                        self._logger.error("camera frame failed: %r" % e)
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
        finally:
            renderer.close()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5.0)


class SimDriver(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        self.cfg = declare_parameters(self)
        self.profile = load_profile(self.cfg.robot)
        drv = self.profile.driver
        self.rules = TrajectoryRules(
            allow_partial_joints_goal=self.cfg.allow_partial_joints_goal,
            allow_nonzero_velocity_at_trajectory_end=self.cfg.allow_nonzero_velocity_at_trajectory_end,
            position_margin=self.cfg.position_margin, max_forward_step=self.cfg.max_forward_step)
        traj_ctrl = self.cfg.trajectory_controller or drv.trajectory_controller
        fwd_ctrl = self.cfg.forward_controller or drv.forward_controller
        self.trajectory_topic = "/%s/joint_trajectory" % traj_ctrl.strip("/")
        self.forward_topic = "/%s/commands" % fwd_ctrl.strip("/")
        self.gripper_topic = self.cfg.gripper_command_topic or drv.gripper_command_topic
        self.js_rate = self.cfg.joint_states_rate_hz or drv.joint_states_rate_hz
        self.control_rate = self.cfg.control_rate_hz or drv.rate_hz
        self.log_reject = RateLimitedLog(self.get_logger(), period_s=1.0)

        self.pub_js = self.create_publisher(JointState, drv.joint_states_topic, STATE_QOS)
        self.pub_img = self.create_publisher(Image, T.CAMERA_IMAGE, SENSOR_QOS)
        self.pub_info = self.create_publisher(CameraInfo, T.CAMERA_INFO, SENSOR_QOS)
        if self.cfg.wrist_camera:
            self.pub_wimg = self.create_publisher(Image, T.WRIST_IMAGE, SENSOR_QOS)
            self.pub_winfo = self.create_publisher(CameraInfo, T.WRIST_INFO, SENSOR_QOS)
        self.pub_status = self.create_publisher(String, T.SIM_STATUS, LATCHED_QOS)
        self.pub_clock = (self.create_publisher(Clock, T.CLOCK, CLOCK_QOS)
                          if self.cfg.use_sim_time else None)

        self._lock = threading.Lock()
        self._commands = collections.deque(maxlen=1000)
        self._reset_request: Optional[int] = None
        self._reset_done = threading.Condition(self._lock)
        self._reset_result = (False, "")
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._startup_error: Optional[BaseException] = None
        self.rejected = 0
        self.last_rejection = ""
        self.resets = 0
        self.exit_code = 0

        self.create_subscription(JointTrajectory, self.trajectory_topic,
                                 lambda m: self._enqueue("trajectory", m), COMMAND_QOS)
        self.create_subscription(Float64MultiArray, self.forward_topic,
                                 lambda m: self._enqueue("forward", m), COMMAND_QOS)
        self.create_subscription(Float64MultiArray, self.gripper_topic,
                                 lambda m: self._enqueue("gripper", m), COMMAND_QOS)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # The world lives on the stepping thread (the camera worker renders from snapshots of it).
        self._thread = threading.Thread(target=self._run, name="sim_step", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise ParameterError("cannot build the sim world: %s" % self._startup_error)
        self.get_logger().info(
            "sim_driver up: robot=%s task=%s seed=%d, %dx%d camera @ %g Hz, control <= %g Hz, "
            "joint_states %g Hz, %s; commands on %s, %s, %s"
            % (self.cfg.robot, self.cfg.task, self.cfg.seed, self.cfg.camera_width,
               self.cfg.camera_height, self.cfg.camera_rate_hz, self.control_rate, self.js_rate,
               ("sim time x%g" % self.cfg.real_time_factor) if self.cfg.use_sim_time
               else ("wall time x%g" % self.cfg.real_time_factor),
               self.trajectory_topic, self.forward_topic, self.gripper_topic))

    # --- ROS callbacks (executor thread): hand over to the stepping thread --------------------
    def _enqueue(self, kind: str, msg) -> None:
        with self._lock:
            self._commands.append((kind, msg, self.get_clock().now().nanoseconds * 1e-9))

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            if p.name == "seed" and (not isinstance(p.value, int) or p.value < 0):
                return SetParametersResult(successful=False,
                                           reason="seed must be a non-negative integer")
        return SetParametersResult(successful=True)

    def _on_reset(self, request, response):
        seed = int(self.get_parameter("seed").value)
        with self._lock:
            self._reset_request = seed
            ok = self._reset_done.wait_for(lambda: self._reset_request is None or self._stop.is_set(),
                                           timeout=60.0)
            success, message = self._reset_result if ok else (False, "reset timed out")
        response.success = bool(success)
        response.message = message
        return response

    # --- stepping thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            from clap_ros.sim import SimWorld
            self.world = SimWorld(robot=self.cfg.robot, task=self.cfg.task, seed=self.cfg.seed,
                                  randomize=self.cfg.randomize,
                                  image_size=(self.cfg.camera_height, self.cfg.camera_width),
                                  wrist_camera=self.cfg.wrist_camera)
            self._init_episode(self.cfg.seed)
            self.camera = None
            if self.cfg.camera_rate_hz > 0:
                cams = [("scene", self.pub_img, self.pub_info)]
                if self.cfg.wrist_camera:
                    cams.append(("wrist", self.pub_wimg, self.pub_winfo))
                self.camera = CameraWorker(self.world, cams, self.get_logger(),
                                           alive=self.context.ok, scene_info=self.cfg.camera_info)
        except Exception as e:  # reported by __init__ as a startup error
            self._startup_error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop()
        except Exception as e:
            if self._stop.is_set() or not self.context.ok():
                return  # SIGINT/SIGTERM shut the context down under a publish: a normal exit
            import traceback
            self.get_logger().fatal("sim stepping thread died: %r\n%s" % (e, traceback.format_exc()))
            self.exit_code = 1
            self.context.try_shutdown()  # ends spin(): a driver without physics must not linger
        finally:
            with self._lock:
                self._reset_done.notify_all()

    def _init_episode(self, seed: int) -> None:
        w = self.world
        self.seed = seed
        self.follower = TrajectoryFollower(self.profile, w.arm_qpos(), self.rules)
        gq = np.asarray(w.gripper_qpos(), dtype=np.float64)
        self.gripper_cmd = self.profile.gripper.command_from_position(float(gq[0]))
        self._last_gripper_q = gq
        self._last_success = bool(w.success())
        self._status_dirty = True

    def _loop(self) -> None:
        w = self.world
        dt = float(w.timestep)
        # Controller updates at the driver's rate, but never between two physics steps.
        n_sub = max(1, int(round((1.0 / self.control_rate) / dt)))
        self.get_logger().info("controller update every %d physics step(s): %.0f Hz"
                               % (n_sub, 1.0 / (n_sub * dt)))
        # The driver's clock never runs backwards: world.time restarts at each reset, clock_s not.
        self._epoch = 0.0
        periods = {"js": 1.0 / self.js_rate if self.js_rate > 0 else math.inf,
                   "cam": 1.0 / self.cfg.camera_rate_hz if self.cfg.camera_rate_hz > 0 else math.inf,
                   "clock": 1.0 / self.cfg.clock_rate_hz if self.pub_clock else math.inf,
                   "status": 1.0 / self.cfg.status_rate_hz}
        due = {k: (0.0 if math.isfinite(p) else math.inf) for k, p in periods.items()}
        rtf = self.cfg.real_time_factor
        anchor_wall, anchor_sim = time.perf_counter(), 0.0
        self.overruns = 0
        last_status_wall = 0.0
        while not self._stop.is_set() and rclpy.ok():
            now = self._epoch + w.time
            if self._reset_request is not None:
                self._do_reset()
                now = self._epoch + w.time
                due = {k: (now if math.isfinite(p) else math.inf) for k, p in periods.items()}
                anchor_wall, anchor_sim = time.perf_counter(), now
            self._apply_commands(now)
            q, qd = self.follower.sample(now)
            w.set_arm_target(q, qd)
            w.set_gripper(self.gripper_cmd)
            w.step(n_sub)
            now = self._epoch + w.time
            stamp = self._stamp(now)
            if now >= due["clock"]:
                self.pub_clock.publish(Clock(clock=stamp))
                due["clock"] = self._next(due["clock"], periods["clock"], now)
            if now >= due["js"]:
                self._publish_joint_states(stamp, periods["js"])
                due["js"] = self._next(due["js"], periods["js"], now)
            if now >= due["cam"]:
                self.camera.offer(w.data, stamp, wait=rtf == 0.0)
                due["cam"] = self._next(due["cam"], periods["cam"], now)
            success = bool(w.success())
            if success != self._last_success:
                self._last_success = success
                self._status_dirty = True
            wall = time.perf_counter()
            if now >= due["status"] or (self._status_dirty and wall - last_status_wall > 0.1):
                self._publish_status()
                last_status_wall = wall
                due["status"] = self._next(due["status"], periods["status"], now)
            if rtf > 0.0:
                target = anchor_wall + (now - anchor_sim) / rtf
                delay = target - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -MAX_LAG_S:
                    self.overruns += 1
                    anchor_wall, anchor_sim = time.perf_counter(), now
                    if self.overruns in (1, 10, 100) or self.overruns % 1000 == 0:
                        self.get_logger().warning(
                            "sim is running slower than real_time_factor %g (lag > %.2f s, %d "
                            "times): sim time now runs slower than the wall clock"
                            % (rtf, MAX_LAG_S, self.overruns))

    @staticmethod
    def _next(due: float, period: float, now: float) -> float:
        nxt = due + period
        return nxt if nxt > now else now + period  # skip missed ticks rather than bursting

    def _stamp(self, clock_s: float):
        if self.cfg.use_sim_time:
            return stamp_from_s(clock_s)
        return self.get_clock().now().to_msg()

    def _to_clock_s(self, stamp_s: float, receipt_s: float, now_s: float) -> float:
        """A header stamp (the node's ROS time) on the driver's sim clock."""
        if stamp_s == 0.0:
            return 0.0
        if self.cfg.use_sim_time:
            return stamp_s
        return stamp_s - receipt_s + now_s

    def _apply_commands(self, now: float) -> None:
        with self._lock:
            cmds = list(self._commands)
            self._commands.clear()
        for kind, msg, receipt in cmds:
            try:
                if kind == "trajectory":
                    names, points, stamp = points_from_msg(msg)
                    self.follower.set_trajectory(names, points, now_s=now,
                                                 stamp_s=self._to_clock_s(stamp, receipt, now))
                elif kind == "forward":
                    self.follower.set_forward(list(msg.data), now_s=now)
                else:
                    self.gripper_cmd = validate_gripper_command(list(msg.data))
            except TrajectoryRejected as e:
                topic = {"trajectory": self.trajectory_topic, "forward": self.forward_topic,
                         "gripper": self.gripper_topic}[kind]
                self.rejected += 1
                self.last_rejection = "%s: %s" % (topic, e.reason)
                self._status_dirty = True
                self.log_reject(kind, "rejected command on %s: %s; holding the last target"
                                % (topic, e.reason))

    def _do_reset(self) -> None:
        with self._lock:
            seed = self._reset_request
        try:
            self._epoch += self.world.time
            if self.camera is not None:
                with self.camera.model_lock:
                    self.world.reset(seed=seed)
            else:
                self.world.reset(seed=seed)
            self._init_episode(seed)
            self.resets += 1
            with self._lock:
                self._commands.clear()  # commands sent before the reset are for the old layout
            result = (True, "reset to seed %d: %s" % (seed, self.world.instruction))
            self.get_logger().info(result[1])
        except Exception as e:
            result = (False, "reset to seed %d failed: %s" % (seed, e))
            self.get_logger().error(result[1])
        self._publish_status()
        self._publish_joint_states(self._stamp(self._epoch + self.world.time), 0.0)
        with self._lock:
            self._reset_result = result
            self._reset_request = None
            self._reset_done.notify_all()

    def _publish_joint_states(self, stamp, period: float) -> None:
        w = self.world
        gq = np.asarray(w.gripper_qpos(), dtype=np.float64)
        gv = (gq - self._last_gripper_q) / period if period > 0 else np.zeros_like(gq)
        self._last_gripper_q = gq
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = list(self.profile.joint_names) + list(self.profile.gripper.joint_names)
        msg.position = [float(x) for x in np.concatenate([w.arm_qpos(), gq])]
        msg.velocity = [float(x) for x in np.concatenate([w.arm_qvel(), gv])]
        self.pub_js.publish(msg)

    def status_dict(self) -> dict:
        w = self.world
        return {
            "robot": self.profile.name, "task": w.task_name, "instruction": w.instruction,
            "seed": int(self.seed), "success": bool(self._last_success),
            "goal_distance_m": round(float(w.goal_distance()), 4),
            "sim_time": float(w.time), "appearance": _jsonable(w.appearance),
            "rejected_commands": int(self.rejected), "last_rejection": self.last_rejection,
            "resets": int(self.resets),
            "camera_frames": int(self.camera.rendered) if self.camera else 0,
            "camera_dropped": int(self.camera.dropped) if self.camera else 0,
        }

    def _publish_status(self) -> None:
        self._status_dirty = False
        self.pub_status.publish(String(data=json.dumps(self.status_dict(), sort_keys=True)))

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if getattr(self, "camera", None) is not None:
            self.camera.stop()


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    return obj


def main(args=None) -> int:
    return run_node(SimDriver, args=args)


if __name__ == "__main__":
    sys.exit(main())
