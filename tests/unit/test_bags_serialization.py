"""rclpy's CDR and the rosbags typestore's CDR are the same bytes for every type we record.

This is what lets the ROS recorder write raw bytes from `raw=True` subscriptions and the direct
recorder write rosbags-serialised messages into the same bags.
"""

import numpy as np
import pytest

from clap_ros.data import bags

rclpy_ser = pytest.importorskip("rclpy.serialization")
from builtin_interfaces.msg import Duration, Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, Header, String  # noqa: E402
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint  # noqa: E402

STAMP_NS = 1_234_567_891_011


def _pairs():
    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    hdr = Header(stamp=Time(sec=STAMP_NS // 10**9, nanosec=STAMP_NS % 10**9), frame_id="cam")
    r_img = Image(
        header=hdr, height=6, width=5, encoding="rgb8", is_bigendian=0, step=15, data=img.tobytes()
    )
    b_img = bags.image_msg(img, STAMP_NS, frame_id="cam")

    K = np.array([[100.0, 0, 32.5], [0, 101.0, 31.5], [0, 0, 1]])
    info = {
        "width": 64,
        "height": 48,
        "K": K,
        "D": [0.1, -0.2, 0.0, 0.0, 0.01],
        "R": np.eye(3),
        "P": np.hstack([K, np.zeros((3, 1))]),
        "distortion_model": "plumb_bob",
        "frame_id": "cam",
    }
    r_info = CameraInfo(
        header=hdr,
        height=48,
        width=64,
        distortion_model="plumb_bob",
        d=[0.1, -0.2, 0.0, 0.0, 0.01],
        k=K.reshape(-1).tolist(),
        r=np.eye(3).reshape(-1).tolist(),
        p=np.hstack([K, np.zeros((3, 1))]).reshape(-1).tolist(),
    )
    b_info = bags.camera_info_msg(info, STAMP_NS)

    names = ["fr3_joint%d" % i for i in range(1, 8)] + ["fr3_finger_joint1"]
    q = rng.normal(size=8)
    qd = rng.normal(size=8)
    hdr_js = Header(stamp=hdr.stamp, frame_id="")
    r_js = JointState(header=hdr_js, name=names, position=q.tolist(), velocity=qd.tolist())
    b_js = bags.joint_state_msg(names, q, STAMP_NS, velocity=qd)

    times = [0.1, 0.25, 1.5]
    P = rng.normal(size=(3, 7))
    V = rng.normal(size=(3, 7))
    V[-1] = 0.0
    r_traj = JointTrajectory(
        header=Header(stamp=Time(sec=0, nanosec=0), frame_id=""),
        joint_names=names[:7],
        points=[
            JointTrajectoryPoint(
                positions=P[i].tolist(),
                velocities=V[i].tolist(),
                time_from_start=Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9))),
            )
            for i, t in enumerate(times)
        ],
    )
    b_traj = bags.joint_trajectory_msg(names[:7], times, P, V, timestamp_ns=0)

    r_arr = Float64MultiArray(data=[0.5, -1.25, 3.0])
    b_arr = bags.float64_array_msg([0.5, -1.25, 3.0])

    r_str = String(data='{"success":true,"seed":3,"text":"put the r\\u00e9d cube"}')
    b_str = bags.string_msg('{"success":true,"seed":3,"text":"put the r\\u00e9d cube"}')
    return [
        ("image", r_img, b_img),
        ("camera_info", r_info, b_info),
        ("joint_state", r_js, b_js),
        ("joint_trajectory", r_traj, b_traj),
        ("float64_array", r_arr, b_arr),
        ("string", r_str, b_str),
    ]


def _padding_mask(msg):
    """True at the alignment-padding bytes of rosbags' CDR for ``msg``: serialise into a buffer
    pre-filled with 0xFF and see which bytes the serialiser never wrote."""
    ts = bags.typestore()
    md = ts.get_msgdef(msg.__msgtype__)
    zero = bags.serialize(msg)
    buf = memoryview(bytearray(b"\xff" * len(zero)))
    buf[:4] = zero[:4]
    md.serialize_cdr_le(buf[4:], 0, msg, ts)
    return np.frombuffer(bytes(buf), np.uint8) != np.frombuffer(zero, np.uint8)


@pytest.mark.parametrize("name,rmsg,bmsg", _pairs(), ids=[p[0] for p in _pairs()])
def test_rclpy_and_rosbags_bytes_identical(name, rmsg, bmsg):
    r_bytes = bytes(rclpy_ser.serialize_message(rmsg))
    b_bytes = bags.serialize(bmsg)
    assert len(b_bytes) > 8
    # Every byte rosbags writes, rclpy writes the same; the only freedom is the alignment padding,
    # which Fast DDS leaves uninitialised, and a tail Fast DDS appends (it sizes empty sequences as
    # if aligned). Neither is part of the message.
    pad = _padding_mask(bmsg)
    assert len(r_bytes) >= len(b_bytes)
    r = np.frombuffer(r_bytes[: len(b_bytes)], np.uint8)
    b = np.frombuffer(b_bytes, np.uint8)
    differ = np.flatnonzero(r != b)
    assert np.all(pad[differ]), "non-padding bytes differ at %s" % differ[~pad[differ]][:10]
    # Re-serialising what rosbags reads from rclpy's bytes gives rosbags' bytes exactly.
    assert bags.serialize(bags.deserialize(r_bytes, bmsg.__msgtype__)) == b_bytes


def test_padding_mask_finds_string_padding():
    # frame_id "" is 1 byte + 3 padding before the next uint32: the mask must see those 3 bytes.
    js = bags.joint_state_msg(["a"], [1.0], 0)
    pad = _padding_mask(js)
    assert 3 <= pad.sum() <= 12


def test_deserialize_rejects_short_and_garbage_bytes():
    from rosbags.serde import SerdeError

    good = bags.serialize(bags.joint_state_msg(["a", "b"], [1.0, 2.0], 5))
    with pytest.raises(SerdeError):
        bags.deserialize(good[:-9], "sensor_msgs/msg/JointState")
    with pytest.raises(SerdeError):
        bags.deserialize(b"\x07\x07garbage", "sensor_msgs/msg/JointState")


@pytest.mark.parametrize("name,rmsg,bmsg", _pairs(), ids=[p[0] for p in _pairs()])
def test_each_side_deserialises_the_others_bytes(name, rmsg, bmsg):
    msgtype = bmsg.__msgtype__
    # rclpy bytes -> rosbags object -> same bytes again
    from_r = bags.deserialize(bytes(rclpy_ser.serialize_message(rmsg)), msgtype)
    assert bags.serialize(from_r) == bags.serialize(bmsg)
    # rosbags bytes -> rclpy message equal to the original rclpy message
    from_b = rclpy_ser.deserialize_message(bags.serialize(bmsg), type(rmsg))
    assert from_b == rmsg


def test_stamp_and_duration_round_trip():
    assert bags.stamp_to_ns(bags.stamp(STAMP_NS)) == STAMP_NS
    assert bags.stamp_to_ns(bags.duration(2.000000001)) == 2_000_000_001
