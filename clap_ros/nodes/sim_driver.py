"""sim_driver: the MuJoCo world behind the same ROS interface as the real arm drivers.

Publishes ``/joint_states`` (arm + gripper joints, named as the real driver names them), the
scene camera (``/camera/image_raw`` rgb8 + ``/camera/camera_info``, sensor-data QoS), ``/clock``
when on sim time, and ``/sim/status`` (JSON, transient-local). Accepts the commands a ros2_control
driver accepts: ``<trajectory_controller>/joint_trajectory`` (JointTrajectoryController rules, a
new message replaces the running one), ``<forward_controller>/commands`` (one position per arm
joint, profile order) and the gripper topic (one opening, 0 closed .. 1 open). A bad command is
rejected with a logged reason and the arm keeps its last safe target. ``~/reset``
(std_srvs/Trigger) resets the world to the ``seed`` parameter, which can be changed at run time.

Like the real arms it stops on a reflex (the robot profile's ``reflexes``: Franka collision
thresholds and motion-generator checks, UR protective stop): the arm holds where it is, the reason
goes to the profile's error topic (``/sim/robot_error``, std_msgs/String JSON, transient-local),
``/sim/status`` and ``/clap/diagnostics`` (ERROR), arm commands are refused until the recovery
service (``/sim_driver/error_recovery``, std_srvs/Trigger; refused while the arm still moves and,
on a UR, during the first 5 s). The JTC tolerances are ROS parameters under their JTC names
(``constraints.<joint>.trajectory`` / ``.goal``, ``constraints.stopped_velocity_tolerance``,
``constraints.goal_time``; 0 = not checked) next to ``interpolate_from_desired_state``.

The driver's rules (world, command acceptance, controller rate, publishing schedule, status) are
clap_ros.sim.driver_core.SimDriverCore, shared with ``clap-ros eval-sim --mode direct``; this node
is its ROS adapter. Physics and publishing run on their own thread, paced against the wall clock
by absolute deadlines (``real_time_factor`` 1.0 = real time; 0 = as fast as possible, which needs
``use_sim_time``).
"""

from __future__ import annotations

import array
import collections
import dataclasses
import json
import sys
import threading
import time
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
from clap_ros.control.trajectory import TrajectoryRejected, points_from_msg
from clap_ros.nodes.common import (
    CLOCK_QOS,
    COMMAND_QOS,
    LATCHED_QOS,
    SENSOR_QOS,
    STATE_QOS,
    ParameterError,
    RateLimitedLog,
    declare_robot,
    run_node,
    stamp_from_s,
)
from clap_ros.nodes.schema_params import declare_params
from clap_ros.robots import load_profile
from clap_ros.runtime.params import ParamError
from clap_ros.sim.driver_core import DriverWiring, SimDriverCore, SimDriverParams

NODE_NAME = "sim_driver"
# If the sim falls this far behind the wall clock it stops trying to catch up (a burst of
# un-paced steps would be a time jump for everyone listening) and re-anchors its pacing.
MAX_LAG_S = 0.25


# The parameter schema lives with the driver's core (ROS-free, shared with eval-sim direct).
SimDriverConfig = SimDriverParams


def load_camera_info_file(path: str, width: int, height: int) -> dict:
    """The scene camera's CameraInfo fields from a camera_info_manager YAML (as a real camera
    driver's camera_info_url), e.g. one written by `clap-ros calibrate intrinsics`."""
    from clap_ros.calibration.yaml_io import CalibrationInputError, read_camera_info

    try:
        cal = read_camera_info(path)
    except CalibrationInputError as e:
        raise ParameterError("parameter 'camera_info_file' = %r: %s" % (path, e)) from None
    if (cal.width, cal.height) != (width, height):
        raise ParameterError(
            "parameter 'camera_info_file' = %r: calibrated at %dx%d, the camera "
            "renders %dx%d (set camera_width/camera_height to match)"
            % (path, cal.width, cal.height, width, height)
        )
    K = np.asarray(cal.K, dtype=float).reshape(3, 3)
    D = np.asarray(cal.D, dtype=float).reshape(-1)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return {
        "width": width,
        "height": height,
        "K": K,
        "D": D,
        "R": np.eye(3),
        "P": P,
        "distortion_model": "rational_polynomial" if D.size == 8 else "plumb_bob",
        "frame_id": "scene_camera_optical_frame",
    }


def declare_constraints(node: Node, robot: str) -> dict:
    """JTC's tolerance parameters, declared under their JTC names for the profile's joints."""
    from rcl_interfaces.msg import ParameterDescriptor

    prof = load_profile(robot)
    specs = [
        (
            "constraints.stopped_velocity_tolerance",
            0.01,
            "goal velocity tolerance (rad/s; 0 = not checked)",
        ),
        (
            "constraints.goal_time",
            0.0,
            "time after the last point the goal may still be reached (s; 0 = wait forever)",
        ),
    ]
    for j in prof.joint_names:
        specs.append(
            (
                "constraints.%s.trajectory" % j,
                0.0,
                "path tolerance of %s (rad; 0 = not checked)" % j,
            )
        )
        specs.append(
            ("constraints.%s.goal" % j, 0.0, "goal tolerance of %s (rad; 0 = not checked)" % j)
        )
    out = {}
    for name, default, text in specs:
        v = node.declare_parameter(
            name, float(default), ParameterDescriptor(description=text, read_only=True)
        ).value
        out[name] = float(v)
    return out


def declare_parameters(node: Node) -> SimDriverParams:
    """Every parameter of SimDriverParams as a ROS parameter (descriptions, ranges, choices);
    a bad value is refused with its name and allowed range."""
    declare_robot(node, SimDriverParams.spec("robot").default, read_only=True)  # names a bad one
    cfg = declare_params(node, SimDriverParams, skip=("robot",))
    try:
        from clap_ros.control.trajectory import constraint_rules

        constraints = declare_constraints(node, str(node.get_parameter("robot").value))
        constraint_rules(load_profile(str(node.get_parameter("robot").value)), constraints)
    except ValueError as e:
        raise ParameterError(str(e)) from None
    cfg = dataclasses.replace(cfg, constraints=constraints)
    try:
        cfg = dataclasses.replace(
            cfg,
            robot=str(node.get_parameter("robot").value),
            use_sim_time=bool(node.get_parameter("use_sim_time").value),
        ).validate()
        cfg.check_clock()
    except ParamError as e:
        raise ParameterError(str(e)) from None
    if cfg.camera_info_file:
        cfg = dataclasses.replace(
            cfg,
            camera_info=load_camera_info_file(
                cfg.camera_info_file, cfg.camera_width, cfg.camera_height
            ),
        )
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

    def __init__(
        self, world, cameras, logger, alive=lambda: True, scene_info: Optional[dict] = None
    ):
        import mujoco

        self._scene_info = scene_info  # a calibration file's CameraInfo instead of the ideal one
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
            infos = [
                self._scene_info
                if name == "scene" and self._scene_info is not None
                else self.world.camera_info(name)
                for name, _, _ in self.cameras
            ]
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
    """ROS adapter over SimDriverCore: subscriptions queue commands for the stepping thread,
    which runs the core on its clock and publishes what its schedule says is due."""

    def __init__(self):
        super().__init__(NODE_NAME)
        self.cfg = declare_parameters(self)
        self.profile = load_profile(self.cfg.robot)
        wiring = DriverWiring.of(self.cfg, self.profile)
        self.trajectory_topic = wiring.trajectory_topic
        self.forward_topic = wiring.forward_topic
        self.gripper_topic = wiring.gripper_topic
        self.js_rate = wiring.joint_states_rate_hz
        self.control_rate = wiring.control_rate_hz
        self.log_reject = RateLimitedLog(self.get_logger(), period_s=1.0)

        self.pub_js = self.create_publisher(JointState, wiring.joint_states_topic, STATE_QOS)
        self.pub_img = self.create_publisher(Image, T.CAMERA_IMAGE, SENSOR_QOS)
        self.pub_info = self.create_publisher(CameraInfo, T.CAMERA_INFO, SENSOR_QOS)
        if self.cfg.wrist_camera:
            self.pub_wimg = self.create_publisher(Image, T.WRIST_IMAGE, SENSOR_QOS)
            self.pub_winfo = self.create_publisher(CameraInfo, T.WRIST_INFO, SENSOR_QOS)
        self.pub_status = self.create_publisher(String, T.SIM_STATUS, LATCHED_QOS)
        reflexes = self.profile.reflexes
        self.pub_error = self.create_publisher(String, reflexes.error_topic, LATCHED_QOS)
        from diagnostic_msgs.msg import DiagnosticArray

        self.pub_diag = self.create_publisher(DiagnosticArray, T.DIAGNOSTICS, STATE_QOS)
        self._recover_request = False
        self._recover_result = (False, "")
        self._last_error_key: Optional[tuple] = None
        self.pub_clock = (
            self.create_publisher(Clock, T.CLOCK, CLOCK_QOS) if self.cfg.use_sim_time else None
        )

        self._lock = threading.Lock()
        self._commands = collections.deque(maxlen=1000)
        self._reset_request: Optional[int] = None
        self._reset_done = threading.Condition(self._lock)
        self._reset_result = (False, "")
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._startup_error: Optional[BaseException] = None
        self.core: Optional[SimDriverCore] = None
        self.exit_code = 0

        self.create_subscription(
            JointTrajectory,
            self.trajectory_topic,
            lambda m: self._enqueue("trajectory", m),
            COMMAND_QOS,
        )
        self.create_subscription(
            Float64MultiArray,
            self.forward_topic,
            lambda m: self._enqueue("forward", m),
            COMMAND_QOS,
        )
        self.create_subscription(
            Float64MultiArray,
            self.gripper_topic,
            lambda m: self._enqueue("gripper", m),
            COMMAND_QOS,
        )
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(Trigger, reflexes.recovery_service, self._on_recover)
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
            % (
                self.cfg.robot,
                self.cfg.task,
                self.cfg.seed,
                self.cfg.camera_width,
                self.cfg.camera_height,
                self.cfg.camera_rate_hz,
                self.control_rate,
                self.js_rate,
                ("sim time x%g" % self.cfg.real_time_factor)
                if self.cfg.use_sim_time
                else ("wall time x%g" % self.cfg.real_time_factor),
                self.trajectory_topic,
                self.forward_topic,
                self.gripper_topic,
            )
        )

    # The core's counters, as the node has always exposed them.
    @property
    def world(self):
        return self.core.world

    @property
    def rejected(self) -> int:
        return self.core.rejected if self.core is not None else 0

    @property
    def resets(self) -> int:
        return self.core.resets if self.core is not None else 0

    # --- ROS callbacks (executor thread): hand over to the stepping thread --------------------
    def _enqueue(self, kind: str, msg) -> None:
        with self._lock:
            self._commands.append((kind, msg, self.get_clock().now().nanoseconds * 1e-9))

    def _on_set_parameters(self, params) -> SetParametersResult:
        seed_spec = SimDriverParams.spec("seed")
        for p in params:
            if p.name == "seed":
                try:
                    seed_spec.check(p.value)
                except ParamError as e:
                    return SetParametersResult(successful=False, reason=str(e))
        return SetParametersResult(successful=True)

    def _on_reset(self, request, response):
        seed = int(self.get_parameter("seed").value)
        with self._lock:
            self._reset_request = seed
            ok = self._reset_done.wait_for(
                lambda: self._reset_request is None or self._stop.is_set(), timeout=60.0
            )
            success, message = self._reset_result if ok else (False, "reset timed out")
        response.success = bool(success)
        response.message = message
        return response

    def _on_recover(self, request, response):
        """Error recovery, done on the stepping thread like a reset."""
        with self._lock:
            self._recover_request = True
            ok = self._reset_done.wait_for(
                lambda: not self._recover_request or self._stop.is_set(), timeout=10.0
            )
            success, message = self._recover_result if ok else (False, "recovery timed out")
        response.success = bool(success)
        response.message = message
        return response

    def _core_log(self, level: str, text: str) -> None:
        # one call site per severity: rclpy refuses a call site whose severity changes
        log = self.get_logger()
        if level == "error":
            log.error(text)
        elif level == "warn":
            log.warning(text)
        else:
            log.info(text)

    # --- stepping thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self.core = SimDriverCore(self.cfg, log=self._core_log)
            self.camera = None
            if self.cfg.camera_rate_hz > 0:
                cams = [("scene", self.pub_img, self.pub_info)]
                if self.cfg.wrist_camera:
                    cams.append(("wrist", self.pub_wimg, self.pub_winfo))
                self.camera = CameraWorker(
                    self.core.world,
                    cams,
                    self.get_logger(),
                    alive=self.context.ok,
                    scene_info=self.cfg.camera_info,
                )
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

            self.get_logger().fatal(
                "sim stepping thread died: %r\n%s" % (e, traceback.format_exc())
            )
            self.exit_code = 1
            self.context.try_shutdown()  # ends spin(): a driver without physics must not linger
        finally:
            with self._lock:
                self._reset_done.notify_all()

    def _loop(self) -> None:
        core = self.core
        self.get_logger().info(
            "controller update every %d physics step(s): %.0f Hz"
            % (core.n_sub, 1.0 / core.control_dt)
        )
        rtf = self.cfg.real_time_factor
        anchor_wall, anchor_sim = time.perf_counter(), 0.0
        self.overruns = 0
        last_status_wall = 0.0
        while not self._stop.is_set() and rclpy.ok():
            if self._reset_request is not None:
                self._do_reset()
                anchor_wall, anchor_sim = time.perf_counter(), core.clock_s
            if self._recover_request:
                result = core.recover()
                with self._lock:
                    self._recover_result = result
                    self._recover_request = False
                    self._reset_done.notify_all()
            self._apply_commands(core.clock_s)
            now = core.step()
            stamp = self._stamp(now)
            for event in core.due(now):
                if event == "clock":
                    self.pub_clock.publish(Clock(clock=stamp))
                elif event == "js":
                    self._publish_joint_states(stamp, core.js_period)
                elif event == "cam":
                    self.camera.offer(core.world.data, stamp, wait=rtf == 0.0)
                elif event == "status":
                    self._publish_status()
                    last_status_wall = time.perf_counter()
            self._publish_robot_error()
            wall = time.perf_counter()
            if core.status_dirty and wall - last_status_wall > 0.1:
                self._publish_status()
                last_status_wall = wall
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
                            % (rtf, MAX_LAG_S, self.overruns)
                        )

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
            if kind == "trajectory":
                try:
                    names, points, stamp = points_from_msg(msg)
                except TrajectoryRejected as e:
                    reason = self.core.reject(kind, e.reason)
                else:
                    reason = self.core.command(
                        kind,
                        (names, points),
                        now=now,
                        stamp_s=self._to_clock_s(stamp, receipt, now),
                    )
            else:
                reason = self.core.command(kind, list(msg.data), now=now)
            if reason is not None:
                self.log_reject(
                    kind,
                    "rejected command on %s: %s; holding the last target"
                    % (self.core.topic_of(kind), reason),
                )

    def _do_reset(self) -> None:
        with self._lock:
            seed = self._reset_request
        try:
            if self.camera is not None:
                with self.camera.model_lock:
                    message = self.core.reset(seed)
            else:
                message = self.core.reset(seed)
            with self._lock:
                self._commands.clear()  # commands sent before the reset are for the old layout
            result = (True, message)
            self.get_logger().info(result[1])
        except Exception as e:
            result = (False, "reset to seed %d failed: %s" % (seed, e))
            self.get_logger().error(result[1])
        self._publish_status()
        self._publish_joint_states(self._stamp(self.core.clock_s), 0.0)
        with self._lock:
            self._reset_result = result
            self._reset_request = None
            self._reset_done.notify_all()

    def _publish_joint_states(self, stamp, period: float) -> None:
        js = self.core.joint_state(period)
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = js.names
        msg.position = [float(x) for x in js.positions]
        msg.velocity = [float(x) for x in js.velocities]
        self.pub_js.publish(msg)

    def status_dict(self) -> dict:
        cam = getattr(self, "camera", None)
        return self.core.status_dict(
            camera_frames=cam.rendered if cam else 0, camera_dropped=cam.dropped if cam else 0
        )

    def _publish_status(self) -> None:
        self.pub_status.publish(String(data=json.dumps(self.status_dict(), sort_keys=True)))

    def _publish_robot_error(self, force: bool = False) -> None:
        """On every change of the reflex state: the error topic and a diagnostics status."""
        core = self.core
        ev = core.reflex
        key = (id(ev), core.safety.monitor.recoveries, core.safety.tolerance_aborts, core.resets)
        if key == self._last_error_key and not force:
            return
        self._last_error_key = key
        err = core.robot_error()
        self.pub_error.publish(String(data=json.dumps(err, sort_keys=True, default=str)))
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        if ev is not None:
            level, message = 2, "reflex %s: %s" % (ev.reason, ev.detail)
        else:
            level, message = (
                0,
                "no reflex (%d so far, %d recovered)" % (err["reflexes"], err["recoveries"]),
            )
        values = [
            KeyValue(key="reflex", value=ev.reason if ev else ""),
            KeyValue(key="reflexes", value=str(err["reflexes"])),
            KeyValue(key="commands_refused", value=str(err["commands_refused"])),
            KeyValue(key="trajectory_aborts", value=str(err["tolerance_aborts"])),
            KeyValue(key="last_trajectory_abort", value=err["last_trajectory_abort"][:200]),
        ]
        msg = DiagnosticArray(
            status=[
                DiagnosticStatus(
                    level=bytes([level]),
                    name=self.get_fully_qualified_name().lstrip("/"),
                    message=message,
                    hardware_id="sim_%s" % self.profile.name,
                    values=values,
                )
            ]
        )
        msg.header.stamp = self._stamp(core.clock_s)
        self.pub_diag.publish(msg)

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if getattr(self, "camera", None) is not None:
            self.camera.stop()


def main(args=None) -> int:
    return run_node(SimDriver, args=args)


if __name__ == "__main__":
    sys.exit(main())
