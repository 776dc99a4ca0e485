"""encoder_node: camera images -> CLAP visual latents on /clap/latent.

Subscribes to ``image_topic`` (sensor-data QoS; rgb8, bgr8 or mono8, any other encoding is rejected
with a rate-limited log) and ``camera_info_topic``; undistorts with the camera's calibration (the
latest CameraInfo, or ``calibration_file``, a camera_info_manager YAML), resizes and normalises
exactly as training did (clap_ros.inference.preprocess) and runs the bundle's encoder graph. It is
robot-independent (no robot parameter): the same latents feed the planner and action nodes.
Publishes /clap/latent: sensor_msgs/Image, encoding 32FC1, height = latent tokens, width = latent
dim, little-endian, header copied from the camera frame (stamp and frame_id), so every later
message can be traced to its frame.

Inference runs on a worker thread that always takes the newest frame: a slow model drops frames
(counted in /clap/diagnostics), it never queues them. ``max_rate_hz`` > 0 caps the encode rate.
Until a CameraInfo arrives, frames are dropped (``require_camera_info``, default true), because an
unrectified image from a distorted camera is not what the model was trained on.
"""
from __future__ import annotations

import sys
import threading
import time

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from clap_ros import topics as T
from clap_ros.nodes.clap_logic import LATENT_ENCODING, LatestSlot, latent_to_bytes
from clap_ros.nodes.common import (SENSOR_QOS, STATE_QOS, ParameterError, RateLimitedLog,
                                   declare, run_node)
from clap_ros.nodes.diagnostics import ERROR, WARN, DiagnosticsPublisher
from clap_ros.nodes.runtime_params import declare_runtime

NODE_NAME = "encoder_node"


def load_calibration_file(path: str):
    """Calibration from a camera_info_manager YAML (image_width, camera_matrix, ...)."""
    from clap_ros.calibration.yaml_io import CalibrationInputError, read_camera_info
    try:
        return read_camera_info(path)
    except CalibrationInputError as e:
        raise ParameterError("parameter 'calibration_file' = %r: %s" % (path, e)) from None


class EncoderNode(Node):
    def __init__(self):
        super().__init__(NODE_NAME)
        image_topic = declare(self, "image_topic", T.CAMERA_IMAGE, "camera image to encode")
        info_topic = declare(self, "camera_info_topic", T.CAMERA_INFO,
                             "CameraInfo of that camera (used unless calibration_file is set)")
        cal_file = declare(self, "calibration_file", "",
                           "camera_info YAML to undistort with ('' = use CameraInfo)")
        self.max_rate = declare(self, "max_rate_hz", 0.0,
                                "most latents per second (0 = encode every frame)",
                                min_value=0.0, max_value=1000.0)
        self.require_info = declare(self, "require_camera_info", True,
                                    "drop frames until a calibration is known")
        calibration = load_calibration_file(cal_file) if cal_file else None
        self.rt = declare_runtime(self, calibration=calibration)
        self.bundle = self.rt.bundle
        self._use_file = calibration is not None
        self._have_cal = calibration is not None
        self._info_key = None
        self._lock = threading.Lock()

        self.diag = DiagnosticsPublisher(self, hardware_id=image_topic)
        self.diag.set("backend", self.rt.backend)
        self.diag.set("latent_shape", "%dx%d" % (self.bundle.latent_tokens, self.bundle.latent_dim))
        self.diag.watch("image", 1.0)
        self.log = RateLimitedLog(self.get_logger(), period_s=2.0)

        # Reliable, so both reliable and best-effort (sensor-data) subscribers match.
        self.pub = self.create_publisher(Image, T.LATENT, STATE_QOS)
        self.create_subscription(Image, image_topic, self._on_image, SENSOR_QOS)
        if not self._use_file:
            self.create_subscription(CameraInfo, info_topic, self._on_info, SENSOR_QOS)
        self.exit_code = 0
        self._slot = LatestSlot()
        self._slot_closed = False
        self._last_encode = -1e9
        self._worker = threading.Thread(target=self._work, name="encoder", daemon=True)
        self._worker.start()
        self.get_logger().info("encoding %s -> %s (%s)" % (
            image_topic, T.LATENT, ("calibration %s" % cal_file) if cal_file
            else "calibration from %s" % info_topic))

    # -- callbacks: cheap, never block on inference -------------------------------------------
    def _on_info(self, msg: CameraInfo) -> None:
        key = (msg.width, msg.height, tuple(msg.k), tuple(msg.d))
        if key == self._info_key:
            return
        from clap_ros.inference.preprocess import Calibration, Preprocessor
        try:
            cal = Calibration.from_camera_info(msg)
        except ValueError as e:
            self.log("info", "ignoring CameraInfo on %s: %s" % (msg.header.frame_id, e))
            self.diag.problem("camera_info", WARN, "bad CameraInfo: %s" % e)
            return
        with self._lock:
            self.rt.preprocessor = Preprocessor(self.bundle.image_height, self.bundle.image_width,
                                                cal)
            self._info_key = key
            self._have_cal = True
        self.diag.clear("camera_info")
        self.get_logger().info("calibration from CameraInfo: %dx%d, %s" % (
            msg.width, msg.height, "undistorting" if cal.distorted else "no distortion"))

    def _on_image(self, msg: Image) -> None:
        self.diag.touch("image")
        self.diag.tick("frames_in")
        self._slot.put(msg)

    # -- worker --------------------------------------------------------------------------------
    def _work(self) -> None:
        from clap_ros.data.images import ImageEncodingError
        from clap_ros.inference.policy import InferenceError
        from clap_ros.inference.preprocess import rgb_from_msg
        while True:
            ok, msg = self._slot.take(timeout=0.2)
            if not ok:
                if self._slot_closed:
                    return
                continue
            self.diag.set("frames_dropped", self._slot.dropped)
            now = time.monotonic()
            if self.max_rate > 0 and now - self._last_encode < 1.0 / self.max_rate:
                self.diag.tick("frames_skipped_rate")
                continue
            if self.require_info and not self._have_cal:
                self.diag.problem("calibration", WARN, "waiting for CameraInfo")
                self.log("cal", "dropping frames until a CameraInfo arrives (or set "
                         "calibration_file, or require_camera_info:=false)")
                continue
            self.diag.clear("calibration")
            try:
                rgb = rgb_from_msg(msg)
                with self._lock:
                    latent = self.rt.encode(rgb)
            except ImageEncodingError as e:
                self.diag.tick("frames_rejected")
                self.diag.problem("encoding", WARN, "rejected frame: %s" % e)
                self.log("encoding", "rejected frame: %s" % e)
                continue
            except InferenceError as e:
                self.diag.tick("inference_errors")
                self.diag.problem("inference", ERROR, str(e))
                self.log("inference", "encoder: %s; nothing published" % e, level="error")
                continue
            self.diag.clear("encoding")
            self.diag.clear("inference")
            self._last_encode = now
            self.diag.latency("encode", time.monotonic() - now)
            self._publish(msg, latent)

    def _publish(self, frame: Image, latent) -> None:
        out = Image()
        out.header = frame.header
        out.height, out.width, out.step, data = latent_to_bytes(latent)
        out.encoding = LATENT_ENCODING
        out.is_bigendian = 0
        out.data = data
        self.pub.publish(out)
        self.diag.tick("latents")
        # Frame stamp -> latent out, on the node's clock (ROS or sim time, as the stamps are).
        age = (self.get_clock().now().nanoseconds
               - (frame.header.stamp.sec * 1_000_000_000 + frame.header.stamp.nanosec)) * 1e-9
        self.diag.latency("frame_to_latent", age)

    def shutdown(self) -> None:
        self._slot_closed = True
        self._slot.close()
        self._worker.join(timeout=5.0)
        self.rt.close()


def main(args=None) -> int:
    return run_node(EncoderNode, args=args)


if __name__ == "__main__":
    sys.exit(main())
