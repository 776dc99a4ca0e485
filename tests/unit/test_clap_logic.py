"""The plain-Python parts of encoder_node / planner_node (no ROS): latent wire format, state from
joint_states by name, plan timing, latest-only mailbox, model path resolution."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from clap_ros.nodes.clap_logic import (
    InputError,
    LatestSlot,
    latent_from_image,
    latent_to_bytes,
    plan_points,
    resolve_model_dir,
    state_from_joint_state,
)
from clap_ros.robots import ProfileError, load_profile

FR3 = load_profile("fr3")


def image(lat, big=False, pad=0, encoding="32FC1"):
    h, w = lat.shape
    rows = lat.astype(">f4" if big else "<f4").view(np.uint8).reshape(h, w * 4)
    rows = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
    return SimpleNamespace(
        encoding=encoding,
        height=h,
        width=w,
        step=w * 4 + pad,
        is_bigendian=int(big),
        data=rows.tobytes(),
    )


def test_latent_round_trip_endianness_and_row_padding():
    lat = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    h, w, step, data = latent_to_bytes(lat)
    msg = SimpleNamespace(encoding="32FC1", height=h, width=w, step=step, is_bigendian=0, data=data)
    assert (h, w, step) == (16, 64, 256)
    np.testing.assert_array_equal(latent_from_image(msg, 16, 64), lat)
    np.testing.assert_array_equal(latent_from_image(image(lat, big=True), 16, 64), lat)
    np.testing.assert_array_equal(latent_from_image(image(lat, pad=8), 16, 64), lat)


@pytest.mark.parametrize(
    "msg, needle",
    [
        (image(np.zeros((16, 64), np.float32), encoding="rgb8"), "encoding"),
        (image(np.zeros((8, 64), np.float32)), "8x64"),
        (image(np.full((16, 64), np.nan, np.float32)), "non-finite"),
    ],
)
def test_bad_latents_are_rejected_with_a_reason(msg, needle):
    with pytest.raises(InputError, match=needle):
        latent_from_image(msg, 16, 64)


def test_truncated_latent_is_rejected():
    msg = image(np.zeros((16, 64), np.float32))
    msg.data = msg.data[:-4]
    with pytest.raises(InputError, match="bytes"):
        latent_from_image(msg, 16, 64)


def test_state_indexes_by_name_and_maps_gripper_like_the_dataset():
    q = np.arange(7) * 0.1
    names = ["fr3_finger_joint2"] + FR3.joint_names[::-1] + ["fr3_finger_joint1"]
    pos = [0.01] + list(q[::-1]) + [0.03]
    state, measured = state_from_joint_state(FR3, names, pos)
    assert measured
    np.testing.assert_allclose(state[:7], q)
    assert state[7] == pytest.approx(0.5)  # mean finger 0.02 of 0.04 stroke
    state, measured = state_from_joint_state(FR3, FR3.joint_names, q)
    assert not measured and state[7] == 1.0
    with pytest.raises(ProfileError, match="fr3_joint3"):
        state_from_joint_state(FR3, [n for n in FR3.joint_names if n != "fr3_joint3"], q[:6])
    with pytest.raises(InputError, match="non-finite"):
        state_from_joint_state(FR3, FR3.joint_names, [np.nan] * 7)


def test_plan_points_timing_rule():
    targets = np.arange(24, dtype=float).reshape(3, 8)
    pts = plan_points(targets, 0.05)
    assert [t for t, _ in pts] == pytest.approx([0.05, 0.10, 0.15])
    assert pts[2][1] == list(targets[2])
    with pytest.raises(InputError):
        plan_points(np.full((2, 8), np.inf), 0.05)
    with pytest.raises(InputError):
        plan_points(targets, 0.0)


def test_latest_slot_keeps_only_newest_and_counts_drops():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(0.0) == (True, 4) and slot.dropped == 4
    assert slot.take(0.01) == (False, None)
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(5.0)))
    t.start()
    time.sleep(0.05)
    slot.put("x")
    t.join(2.0)
    assert got == [(True, "x")]
    slot.close()
    t0 = time.monotonic()
    assert slot.take(5.0) == (False, None) and time.monotonic() - t0 < 1.0


def test_resolve_model_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # not in the working directory: found next to the package (source checkout)
    p = resolve_model_dir("models/default")
    assert p.is_dir() and (p / "manifest.yaml").is_file()
    (tmp_path / "models" / "default").mkdir(parents=True)
    assert resolve_model_dir("models/default") == tmp_path / "models" / "default"
    assert resolve_model_dir("nope") == tmp_path / "nope"  # the loader's error names it
    assert resolve_model_dir(str(tmp_path)) == tmp_path
