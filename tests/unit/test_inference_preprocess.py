"""Camera image -> encoder input: parity with training, encodings, undistortion."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from clap_ros.data.images import ImageEncodingError, numpy_to_image_fields
from clap_ros.inference.preprocess import (
    ENCODER_MEAN,
    ENCODER_STD,
    Calibration,
    Preprocessor,
    preprocess_rgb,
    rgb_from_array,
    rgb_from_msg,
    to_unit,
    undistort_image,
)


def scene(h=96, w=128, seed=0):
    """A smooth image with edges (area resampling of pure noise hides resize mistakes less)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 2) % 256, (y * 3) % 256, ((x + y) * 5) % 256], axis=-1).astype(np.uint8)
    img[h // 3 : h // 2, w // 4 : w // 2] = rng.integers(0, 255, 3, dtype=np.uint8)
    return img


def test_matches_training_preprocessing_exactly():
    data = pytest.importorskip("clap_train.data")
    ntp = pytest.importorskip("clap_train.ntp")
    import torch

    # training's encoder normalises with the runtime's constants (the graph applies them)
    assert ntp.ObsEncoder.MEAN == ENCODER_MEAN and ntp.ObsEncoder.STD == ENCODER_STD

    img = scene(120, 160)
    ours = preprocess_rgb(img, 64, 64)
    frames = data.resize_frames(img[None], 64)  # uint8 [1,3,64,64]
    theirs = to_unit(torch.from_numpy(frames)).numpy()  # float [0,1], as the NTP/RF batches
    assert ours.shape == theirs.shape == (1, 3, 64, 64) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


def test_resize_is_area_and_layout_is_nchw_rgb():
    img = scene(128, 128)
    x = preprocess_rgb(img, 64, 32)
    assert x.shape == (1, 3, 64, 32)
    want = cv2.resize(img, (32, 64), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    np.testing.assert_allclose(x[0].transpose(1, 2, 0), want, atol=1e-7)
    assert not np.allclose(cv2.resize(img, (32, 64), interpolation=cv2.INTER_LINEAR) / 255.0, want)
    same = preprocess_rgb(scene(64, 32), 64, 32)  # already at size: no resampling
    np.testing.assert_array_equal(same[0, 0], scene(64, 32)[..., 0] / np.float32(255.0))


def test_encodings_bgr_and_mono_give_the_rgb_image():
    rgb = scene()
    assert np.array_equal(rgb_from_array(rgb, "rgb8"), rgb)
    assert np.array_equal(rgb_from_array(np.ascontiguousarray(rgb[..., ::-1]), "bgr8"), rgb)
    mono = rgb[..., 1]
    out = rgb_from_array(mono, "mono8")
    assert out.shape == rgb.shape and all(np.array_equal(out[..., c], mono) for c in range(3))
    assert np.array_equal(rgb_from_array(mono[..., None], "mono8"), out)


def test_other_encodings_and_bad_arrays_are_rejected_clearly():
    with pytest.raises(
        ImageEncodingError, match="'rgba8' is not accepted by the encoder.*rgb8, bgr8, mono8"
    ):
        rgb_from_array(np.zeros((4, 4, 4), np.uint8), "rgba8")
    with pytest.raises(ImageEncodingError, match="must be uint8"):
        rgb_from_array(np.zeros((4, 4, 3), np.float32), "rgb8")
    with pytest.raises(ImageEncodingError, match="expected HxWx3"):
        rgb_from_array(np.zeros((4, 4), np.uint8), "rgb8")
    with pytest.raises(ImageEncodingError, match="expected uint8 HxWx3 RGB"):
        Preprocessor(8, 8)(np.zeros((4, 4), np.uint8))


def test_image_messages_with_padded_rows():
    rgb = scene(30, 40)
    for enc, arr in (("rgb8", rgb), ("bgr8", np.ascontiguousarray(rgb[..., ::-1]))):
        f = numpy_to_image_fields(arr, enc)
        msg = SimpleNamespace(**f)
        assert np.array_equal(rgb_from_msg(msg), rgb)
        pad = 8  # drivers may pad rows; decoding must honour step
        data = np.zeros((30, f["step"] + pad), np.uint8)
        data[:, : f["step"]] = np.asarray(f["data"]).reshape(30, -1)
        msg = SimpleNamespace(**dict(f, step=f["step"] + pad, data=data.reshape(-1)))
        assert np.array_equal(rgb_from_msg(msg), rgb)
    f = numpy_to_image_fields(np.zeros((4, 4), np.uint16), "mono16")
    with pytest.raises(ImageEncodingError, match="'mono16' is not accepted"):
        rgb_from_msg(SimpleNamespace(**f))


def sim_like_calibration(w=128, h=96, D=(0, 0, 0, 0, 0)):
    f = h / (2 * np.tan(np.radians(45) / 2))
    K = [[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]]
    return {"width": w, "height": h, "K": np.array(K), "D": np.array(D, float)}


def test_zero_distortion_is_identity():
    img = scene()
    info = sim_like_calibration()
    np.testing.assert_array_equal(undistort_image(img, info["K"], info["D"]), img)
    cal = Calibration.from_camera_info(info)
    assert not cal.distorted
    np.testing.assert_array_equal(Preprocessor(64, 64, cal)(img), preprocess_rgb(img, 64, 64))


def test_distortion_is_removed_and_size_is_checked():
    img = scene()
    info = sim_like_calibration(D=(-0.3, 0.1, 0.0, 0.0, 0.0))
    cal = Calibration.from_camera_info(info)
    pre = Preprocessor(96, 128, cal)
    out = pre(img)
    assert out.shape == (1, 3, 96, 128)
    ref = undistort_image(img, info["K"], info["D"]).astype(np.float32) / 255.0
    # remap (cached maps) and cv2.undistort interpolate the same way up to rounding
    assert np.mean(np.abs(out[0].transpose(1, 2, 0) - ref)) < 2e-3
    assert np.mean(np.abs(out - preprocess_rgb(img, 96, 128))) > 0.01
    # the image centre is a fixed point of radial distortion
    np.testing.assert_allclose(out[0, :, 48, 64], img[48, 64] / 255.0, atol=0.02)
    with pytest.raises(
        ImageEncodingError, match="image is 64x64 but the calibration is for 128x96"
    ):
        pre(scene(64, 64))


def test_calibration_from_camera_info_message_and_yaml():
    msg = SimpleNamespace(
        width=128, height=96, k=[100.0, 0, 64, 0, 100, 48, 0, 0, 1], d=[0.1, 0, 0, 0, 0]
    )
    cal = Calibration.from_camera_info(msg)
    assert cal.K[0, 0] == 100 and cal.K[1, 2] == 48 and cal.distorted
    yaml_like = {
        "image_width": 640,
        "image_height": 480,
        "camera_matrix": {"rows": 3, "cols": 3, "data": [500, 0, 320, 0, 500, 240, 0, 0, 1]},
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0, 0, 0, 0, 0]},
    }
    cal = Calibration.from_camera_info(yaml_like)
    assert (cal.width, cal.height) == (640, 480) and cal.K[0, 2] == 320 and not cal.distorted
    with pytest.raises(ValueError, match="camera matrix K is invalid"):
        Calibration.from_camera_info(dict(yaml_like, camera_matrix=[0] * 9))
