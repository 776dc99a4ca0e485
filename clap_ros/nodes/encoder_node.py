"""encoder_node: camera images -> CLAP visual latents on /clap/latent.

A thin adapter around ``clap_ros.runtime.encoder_core.EncoderCore`` (the logic, tested without
ROS): subscriptions -> core -> publications, parameters (``EncoderParams``, declared from the
schema with descriptions and ranges) and diagnostics.

Subscribes to ``image_topic`` (sensor-data QoS; rgb8, bgr8 or mono8, any other encoding is rejected
with a rate-limited log) and ``camera_info_topic``; undistorts with the camera's calibration (the
latest CameraInfo, or ``calibration_file``, a camera_info_manager YAML), resizes and normalises
exactly as training did (clap_ros.inference.preprocess) and runs the bundle's encoder graph. It is
robot-independent: the same latents feed the planner and action nodes.
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
from clap_ros.nodes.common import SENSOR_QOS, STATE_QOS, ParameterError, RateLimitedLog, run_node
from clap_ros.nodes.diagnostics import ERROR, WARN, DiagnosticsPublisher
from clap_ros.nodes.runtime_params import declare_runtime
from clap_ros.nodes.schema_params import declare_params
from clap_ros.rostime import stamp_to_ns, stamp_to_s
from clap_ros.runtime import encoder_core as E
from clap_ros.runtime.messages import LATENT_ENCODING, LatestSlot, latent_to_bytes
from clap_ros.runtime.params import EncoderParams, RuntimeParams

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
        p = declare_params(self, EncoderParams, skip=RuntimeParams.RUNTIME_NAMES)
        self.params = p
        calibration = load_calibration_file(p.calibration_file) if p.calibration_file else None
        self.rt = declare_runtime(self, calibration=calibration)
        self.bundle = self.rt.bundle
        self.core = E.EncoderCore(self.rt, p, calibration=calibration)

        self.diag = DiagnosticsPublisher(self, hardware_id=p.image_topic)
        self.diag.set("backend", self.rt.backend)
        self.diag.set("latent_shape", "%dx%d" % (self.bundle.latent_tokens, self.bundle.latent_dim))
        self.diag.watch("image", 1.0)
        self.log = RateLimitedLog(self.get_logger(), period_s=2.0)

        # Reliable, so both reliable and best-effort (sensor-data) subscribers match.
        self.pub = self.create_publisher(Image, T.LATENT, STATE_QOS)
        self.create_subscription(Image, p.image_topic, self._on_image, SENSOR_QOS)
        if calibration is None:
            self.create_subscription(CameraInfo, p.camera_info_topic, self._on_info, SENSOR_QOS)
        self.exit_code = 0
        self._slot = LatestSlot()
        self._slot_closed = False
        self._worker = threading.Thread(target=self._work, name="encoder", daemon=True)
        self._worker.start()
        self.get_logger().info(
            "encoding %s -> %s (%s)"
            % (
                p.image_topic,
                T.LATENT,
                ("calibration %s" % p.calibration_file)
                if p.calibration_file
                else "calibration from %s" % p.camera_info_topic,
            )
        )

    # -- callbacks: cheap, never block on inference, never raise --------------------------------
    def _on_info(self, msg: CameraInfo) -> None:
        try:
            was = self.core.calibrated
            why = self.core.set_camera_info(msg)
        except Exception as e:  # a malformed message must not take the node down
            why = "bad CameraInfo: %r" % (e,)
        if why:
            self.log("info", "ignoring CameraInfo on %s: %s" % (msg.header.frame_id[:80], why))
            self.diag.problem("camera_info", WARN, why)
            self.diag.set("camera_info_refused", self.core.counters["camera_info_refused"])
            return
        self.diag.clear("camera_info")
        if not was and self.core.calibrated:
            cal = self.rt.preprocessor.calibration
            self.get_logger().info(
                "calibration from CameraInfo: %dx%d, %s"
                % (
                    msg.width,
                    msg.height,
                    "undistorting" if cal is not None and cal.distorted else "no distortion",
                )
            )

    def _on_image(self, msg: Image) -> None:
        self.diag.touch("image")
        self.diag.tick("frames_in")
        self._slot.put(msg)

    # -- worker --------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            ok, msg = self._slot.take(timeout=0.2)
            if not ok:
                if self._slot_closed:
                    return
                continue
            try:
                self._encode(msg)
            except Exception as e:  # keep encoding; the reason is in the log and diagnostics
                self.diag.problem("exception", ERROR, "encoding failed: %r" % (e,))
                self.log("exception", "encoding failed: %r" % (e,), level="error")

    def _encode(self, msg: Image) -> None:
        self.diag.set("frames_dropped", self._slot.dropped)
        now = time.monotonic()
        res = self.core.admit(now)
        if res is None:
            res = self.core.encode(msg, stamp_to_s(msg.header.stamp), now, admitted=True)
        if res.refused:
            self.diag.tick(res.refused)  # <key>_count in /clap/diagnostics
        if res.refused == E.RATE:
            return
        if res.refused == E.NO_CALIBRATION:
            self.diag.problem("calibration", WARN, "waiting for CameraInfo")
            self.log("cal", res.reason)
            return
        self.diag.clear("calibration")
        if res.refused == E.REJECTED:
            self.diag.problem("encoding", WARN, res.reason)
            self.log("encoding", res.reason)
            return
        if res.refused == E.INFERENCE:
            self.diag.problem("inference", ERROR, res.reason)
            self.log("inference", res.reason, level="error")
            return
        self.diag.clear("encoding")
        self.diag.clear("inference")
        self.diag.latency("encode", time.monotonic() - now)
        self._publish(msg, res.latent)

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
        age = (self.get_clock().now().nanoseconds - stamp_to_ns(frame.header.stamp)) * 1e-9
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
