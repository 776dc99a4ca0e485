"""sensor_msgs/Image <-> numpy without cv_bridge: encodings, padded rows, byte order, errors."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from clap_ros.data import bags
from clap_ros.data.images import (
    ImageEncodingError,
    compressed_to_rgb,
    image_to_numpy,
    image_to_rgb,
    message_to_rgb,
    numpy_to_image_fields,
)

RNG = np.random.default_rng(3)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _msg(arr, encoding, pad=0, bigendian=False):
    """An Image-shaped message with ``pad`` junk bytes at the end of every row."""
    a = np.asarray(arr)
    if bigendian and a.dtype.itemsize > 1:
        a = a.astype(a.dtype.newbyteorder(">"))
    h = a.shape[0]
    rows = a.reshape(h, -1).view(np.uint8).reshape(h, -1)
    junk = np.full((h, pad), 0xAB, np.uint8)
    data = np.hstack([rows, junk]).tobytes()
    return SimpleNamespace(
        height=h,
        width=a.shape[1],
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=rows.shape[1] + pad,
        data=data,
    )


@pytest.mark.parametrize("pad", [0, 3, 16])
def test_rgb_bgr_mono_with_padded_step(pad):
    assert np.array_equal(image_to_rgb(_msg(RGB, "rgb8", pad)), RGB)
    assert np.array_equal(image_to_rgb(_msg(RGB[..., ::-1], "bgr8", pad)), RGB)
    mono = RGB[..., 0]
    out = image_to_rgb(_msg(mono, "mono8", pad))
    assert out.shape == (5, 7, 3) and np.array_equal(out[..., 2], mono)
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)])
    assert np.array_equal(image_to_rgb(_msg(rgba, "rgba8", pad)), RGB)
    bgra = np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 9, np.uint8)])
    assert np.array_equal(image_to_rgb(_msg(bgra, "bgra8", pad)), RGB)


@pytest.mark.parametrize("bigendian", [False, True])
def test_16uc1_and_32fc1_byte_order(bigendian):
    depth = RNG.integers(0, 65535, (4, 6)).astype(np.uint16)
    got = image_to_numpy(_msg(depth, "16UC1", pad=2, bigendian=bigendian))
    assert got.dtype == np.uint16 and np.array_equal(got, depth)
    lat = RNG.normal(size=(3, 8)).astype(np.float32)
    got = image_to_numpy(_msg(lat, "32FC1", pad=4, bigendian=bigendian))
    assert got.dtype == np.float32 and np.array_equal(got, lat)


def test_round_trip_through_real_message_and_cdr():
    msg = bags.image_msg(RGB, 123, encoding="rgb8")
    back = bags.deserialize(bags.serialize(msg), "sensor_msgs/msg/Image")
    assert back.step == 21 and np.array_equal(image_to_rgb(back), RGB)
    f = RNG.normal(size=(4, 5)).astype(np.float32)
    back = bags.deserialize(
        bags.serialize(bags.image_msg(f, 1, encoding="32FC1")), "sensor_msgs/msg/Image"
    )
    assert np.array_equal(image_to_numpy(back), f)


def test_wrong_encoding_is_named():
    with pytest.raises(ImageEncodingError, match="'yuv422'"):
        image_to_numpy(_msg(RGB, "yuv422"))
    with pytest.raises(ImageEncodingError, match="'bayer_rggb8'"):
        numpy_to_image_fields(RGB, "bayer_rggb8")
    with pytest.raises(ImageEncodingError, match="16UC1"):
        image_to_rgb(_msg(np.zeros((2, 2), np.uint16), "16UC1"))


def test_inconsistent_messages_are_rejected():
    m = _msg(RGB, "rgb8")
    m.step = 10  # less than a row
    with pytest.raises(ImageEncodingError, match="step 10"):
        image_to_numpy(m)
    m = _msg(RGB, "rgb8")
    m.data = m.data[:-5]
    with pytest.raises(ImageEncodingError, match="data bytes"):
        image_to_numpy(m)
    with pytest.raises(ImageEncodingError, match="needs dtype"):
        numpy_to_image_fields(RGB.astype(np.float32), "rgb8")
    with pytest.raises(ImageEncodingError, match="needs shape"):
        numpy_to_image_fields(RGB[..., :2], "rgb8")


def test_compressed_png_exact_and_jpeg_close():
    big = np.kron(RGB, np.ones((8, 8, 1), np.uint8))
    ok, png = cv2.imencode(".png", big[..., ::-1])
    assert ok
    msg = SimpleNamespace(format="rgb8; png compressed bgr8", data=png.tobytes())
    assert np.array_equal(compressed_to_rgb(msg), big)
    ok, jpg = cv2.imencode(".jpg", big[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    got = message_to_rgb(SimpleNamespace(format="jpeg", data=jpg.tobytes()))
    assert got.shape == big.shape and np.abs(got.astype(int) - big).mean() < 8
    with pytest.raises(ImageEncodingError, match="does not decode"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=b"\x00" * 50))
    with pytest.raises(ImageEncodingError, match="'tiff'"):
        compressed_to_rgb(SimpleNamespace(format="tiff", data=b"\x00"))
