"""MCAP bags of direct-mode episodes, with the topics and message types of ROS-mode bags.

The messages are rosbags message objects (clap_ros.data.bags' typestore), so writing a bag needs
no rclpy; stamps are the driver clock in nanoseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from clap_ros import topics as T
from clap_ros.data.bags import BagWriter, msg_class
from clap_ros.rostime import sec_nanosec


def _stamp(t_s: float):
    sec, nanosec = sec_nanosec(max(0.0, t_s))
    return msg_class("builtin_interfaces/msg/Time")(sec=int(sec), nanosec=int(nanosec))


def _header(t_s: float, frame_id: str = ""):
    return msg_class("std_msgs/msg/Header")(stamp=_stamp(t_s), frame_id=frame_id)


def _duration(t_s: float):
    sec, nanosec = sec_nanosec(t_s)
    return msg_class("builtin_interfaces/msg/Duration")(sec=int(sec), nanosec=int(nanosec))


def _f64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def recorded_topics(profile, command_mode: str) -> Dict[str, str]:
    """topic -> type of an eval-sim bag (as clap_ros.eval.sim_eval's EvalClient records)."""
    drv = profile.driver
    topics = {
        T.CAMERA_IMAGE: T.TYPES["image"],
        T.CAMERA_INFO: T.TYPES["camera_info"],
        drv.joint_states_topic: T.TYPES["joint_state"],
        drv.gripper_command_topic: T.TYPES["float64_array"],
        T.INSTRUCTION: T.TYPES["string"],
        T.SIM_STATUS: T.TYPES["string"],
        T.PLAN: T.TYPES["joint_trajectory"],
        T.PLAN_TOKENS: T.TYPES["int32_array"],
        T.DIAGNOSTICS: T.TYPES["diagnostics"],
        T.EPISODE_OUTCOME: T.TYPES["string"],
    }
    if command_mode == "joint_trajectory":
        topics[drv.trajectory_topic] = T.TYPES["joint_trajectory"]
    else:
        topics[drv.forward_topic] = T.TYPES["float64_array"]
    return topics


class EpisodeBag:
    """One episode's bag: the same topics as a ROS-mode eval-sim bag."""

    def __init__(self, path: Path, profile, command_mode: str, custom: Dict[str, str]):
        self.path = Path(path)
        self.writer = BagWriter(self.path).__enter__()
        self.topics = recorded_topics(profile, command_mode)
        for topic, msgtype in self.topics.items():
            self.writer.add_topic(topic, msgtype)
        for k, v in custom.items():
            self.writer.set_custom_data(k, str(v))

    def _write(self, topic: str, t_s: float, msg) -> None:
        self.writer.write(topic, int(round(max(0.0, t_s) * 1e9)), msg)

    def string(self, topic: str, t_s: float, text: str) -> None:
        self._write(topic, t_s, msg_class("std_msgs/msg/String")(data=text))

    def status(self, t_s: float, status: dict) -> None:
        self.string(T.SIM_STATUS, t_s, json.dumps(status, sort_keys=True))

    def joint_state(
        self, topic: str, t_s: float, names: Sequence[str], positions, velocities
    ) -> None:
        JS = msg_class("sensor_msgs/msg/JointState")
        self._write(
            topic,
            t_s,
            JS(
                header=_header(t_s),
                name=list(names),
                position=_f64(positions),
                velocity=_f64(velocities),
                effort=np.zeros(0),
            ),
        )

    def image(self, t_s: float, rgb: np.ndarray, info: dict) -> None:
        Image = msg_class("sensor_msgs/msg/Image")
        CameraInfo = msg_class("sensor_msgs/msg/CameraInfo")
        RoI = msg_class("sensor_msgs/msg/RegionOfInterest")
        frame = str(info.get("frame_id", "scene_camera_optical_frame"))
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        self._write(
            T.CAMERA_IMAGE,
            t_s,
            Image(
                header=_header(t_s, frame),
                height=h,
                width=w,
                encoding="rgb8",
                is_bigendian=0,
                step=w * 3,
                data=np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1),
            ),
        )
        self._write(
            T.CAMERA_INFO,
            t_s,
            CameraInfo(
                header=_header(t_s, frame),
                height=int(info["height"]),
                width=int(info["width"]),
                distortion_model=str(info.get("distortion_model", "plumb_bob")),
                d=_f64(info.get("D", np.zeros(5))),
                k=_f64(info["K"]),
                r=_f64(info.get("R", np.eye(3))),
                p=_f64(info["P"]),
                binning_x=0,
                binning_y=0,
                roi=RoI(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
            ),
        )

    def float_array(self, topic: str, t_s: float, values) -> None:
        F = msg_class("std_msgs/msg/Float64MultiArray")
        Layout = msg_class("std_msgs/msg/MultiArrayLayout")
        self._write(topic, t_s, F(layout=Layout(dim=[], data_offset=0), data=_f64(values)))

    def trajectory(
        self, topic: str, t_s: float, joint_names: Sequence[str], points, stamp_s: float = 0.0
    ) -> None:
        JT = msg_class("trajectory_msgs/msg/JointTrajectory")
        JTP = msg_class("trajectory_msgs/msg/JointTrajectoryPoint")
        pts = []
        for p in points:
            vel = p[2] if len(p) > 2 and p[2] is not None else []
            acc = p[3] if len(p) > 3 and p[3] is not None else []
            pts.append(
                JTP(
                    positions=_f64(p[1]),
                    velocities=_f64(vel),
                    accelerations=_f64(acc),
                    effort=np.zeros(0),
                    time_from_start=_duration(float(p[0])),
                )
            )
        self._write(
            topic, t_s, JT(header=_header(stamp_s), joint_names=list(joint_names), points=pts)
        )

    def int_array(self, topic: str, t_s: float, values) -> None:
        I32 = msg_class("std_msgs/msg/Int32MultiArray")
        Layout = msg_class("std_msgs/msg/MultiArrayLayout")
        self._write(
            topic,
            t_s,
            I32(
                layout=Layout(dim=[], data_offset=0),
                data=np.asarray(values, dtype=np.int32).reshape(-1),
            ),
        )

    def close(self) -> None:
        self.writer.__exit__(None, None, None)
