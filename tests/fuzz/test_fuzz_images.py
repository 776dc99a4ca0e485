"""Fuzzed camera images through the decoding and preprocessing the encoder runs: every image is
either decoded exactly or refused with an ImageEncodingError that says why; nothing else escapes."""

import numpy as np
import pytest
from fuzz_support import (
    MAX_TEXT,
    fuzz_settings,
    image_fields,
    image_ns,
    reference_decode,
    well_formed,
)
from hypothesis import given, strategies as st

from clap_ros.data.images import (
    ENCODINGS,
    RGB_ENCODINGS,
    ImageEncodingError,
    compressed_to_rgb,
    decode_image_msg,
    image_to_numpy,
    image_to_rgb,
    message_to_rgb,
)
from clap_ros.inference.preprocess import (
    ACCEPTED_ENCODINGS,
    Calibration,
    Preprocessor,
    preprocess_rgb,
    rgb_from_array,
    rgb_from_msg,
)

ACCEPTED = st.sampled_from(list(ACCEPTED_ENCODINGS))


def _rgb_reference(fields):
    arr = reference_decode(fields)
    enc = fields["encoding"]
    if enc == "bgr8":
        return arr[..., ::-1]
    if enc in ("mono8", "8UC1"):
        return np.repeat(arr[..., None], 3, axis=2)
    if enc == "rgba8":
        return arr[..., :3]
    if enc == "bgra8":
        return arr[..., 2::-1]
    return arr


@fuzz_settings(300)
@given(image_fields())
def test_image_to_numpy_decodes_exactly_or_refuses_with_a_reason(fields):
    msg = image_ns(fields)
    try:
        arr = image_to_numpy(msg)
    except ImageEncodingError as e:
        assert str(e), "a refusal must say why"
        assert len(str(e)) < MAX_TEXT
        assert not well_formed(fields), "a well-formed image was refused: %s" % e
        return
    assert well_formed(fields), "accepted an image that does not hold step*height bytes"
    channels, dtype = ENCODINGS[fields["encoding"]]
    want = (fields["height"], fields["width"]) + ((channels,) if channels > 1 else ())
    assert arr.shape == want and arr.dtype == dtype
    np.testing.assert_array_equal(arr, reference_decode(fields))


@fuzz_settings(200)
@given(image_fields())
def test_image_to_rgb_and_decode_image_msg_give_rgb_or_refuse(fields):
    msg = image_ns(fields)
    for fn in (
        image_to_rgb,
        message_to_rgb,
        lambda m: decode_image_msg(m, "sensor_msgs/msg/Image"),
    ):
        try:
            rgb = fn(msg)
        except ImageEncodingError as e:
            assert str(e)
            continue
        assert fields["encoding"] in ENCODINGS
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert rgb.shape[:2] == (fields["height"], fields["width"])
        np.testing.assert_array_equal(rgb, _rgb_reference(fields))
    if well_formed(fields) and fields["encoding"] in RGB_ENCODINGS:
        decode_image_msg(msg, "sensor_msgs/msg/Image")  # must not raise


@fuzz_settings(300)
@given(st.one_of(image_fields(), image_fields(encoding=ACCEPTED)))
def test_rgb_from_msg_then_preprocess_gives_encoder_input_or_refuses(fields):
    """The encoder's path: rgb_from_msg -> Preprocessor. Accepted frames become a finite
    float32 [1, 3, 64, 64] in [0, 1]; an empty (0-pixel) frame is refused, never resized."""
    msg = image_ns(fields)
    try:
        rgb = rgb_from_msg(msg)
    except ImageEncodingError as e:
        assert str(e)
        ok = (
            well_formed(fields)
            and fields["encoding"] in ACCEPTED_ENCODINGS
            and fields["height"] >= 1
            and fields["width"] >= 1
        )
        assert not ok, "a good %s frame was refused: %s" % (fields["encoding"], e)
        return
    assert fields["encoding"] in ACCEPTED_ENCODINGS and fields["height"] >= 1 <= fields["width"]
    assert rgb.dtype == np.uint8 and rgb.shape == (fields["height"], fields["width"], 3)
    np.testing.assert_array_equal(rgb, _rgb_reference(fields))
    x = Preprocessor(64, 64)(rgb)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    assert np.all(np.isfinite(x)) and x.min() >= 0.0 and x.max() <= 1.0


@fuzz_settings(150)
@given(
    st.sampled_from(list(ACCEPTED_ENCODINGS) + ["rgba8", "32FC1", "bgr", "mono16"]),
    st.lists(st.integers(0, 9), min_size=0, max_size=4),
    st.sampled_from([np.uint8, np.float32, np.uint16, np.int8, bool]),
)
def test_rgb_from_array_accepts_only_uint8_of_the_right_shape(encoding, shape, dtype):
    arr = np.zeros(shape, dtype=dtype)
    try:
        rgb = rgb_from_array(arr, encoding)
    except ImageEncodingError as e:
        assert str(e)
        return
    assert encoding in ACCEPTED_ENCODINGS and dtype is np.uint8
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and min(rgb.shape) >= 1


@fuzz_settings(100)
@given(
    st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.booleans()
)
def test_preprocessor_with_calibration_refuses_other_sizes(h, w, cal_h, cal_w, distorted):
    K = [[30.0, 0, cal_w / 2], [0, 30.0, cal_h / 2], [0, 0, 1]]
    D = [0.1, -0.05, 0, 0, 0] if distorted else [0.0] * 5
    pre = Preprocessor(
        16,
        16,
        Calibration.from_camera_info(
            {"k": np.ravel(K).tolist(), "d": D, "width": cal_w, "height": cal_h}
        ),
    )
    rgb = np.random.default_rng(h * 41 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    try:
        x = pre(rgb)
    except ImageEncodingError as e:
        assert distorted and (h, w) != (cal_h, cal_w), e
        return
    assert x.shape == (1, 3, 16, 16) and np.all(np.isfinite(x))


@fuzz_settings(60)
@given(
    st.sampled_from(
        [
            np.zeros((0, 3, 3)),
            np.zeros((4, 4)),
            np.zeros((4, 4, 4), np.uint8),
            np.zeros((4, 4, 3), np.float32),
        ]
    )
)
def test_preprocessor_refuses_non_rgb(arr):
    with pytest.raises(ImageEncodingError):
        Preprocessor(8, 8)(arr)


@fuzz_settings(150)
@given(
    st.sampled_from(["jpeg", "png", "", "rgb8; jpeg compressed bgr8", "tiff", "PNG", "\x00"]),
    st.one_of(
        st.binary(max_size=300),
        st.sampled_from(
            [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40]
        ),
    ),
    st.sampled_from(["bytes", "ndarray"]),
)
def test_compressed_garbage_is_refused_with_a_reason(fmt, data, kind):
    msg = image_ns(
        {"format": fmt, "data": data if kind == "bytes" else np.frombuffer(data, np.uint8)}
    )
    del msg.__dict__["header"]
    for fn in (
        compressed_to_rgb,
        message_to_rgb,
        lambda m: decode_image_msg(m, "sensor_msgs/msg/CompressedImage"),
    ):
        try:
            rgb = fn(msg)
        except ImageEncodingError as e:
            assert str(e)
            continue
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


def test_a_real_png_still_decodes():
    import cv2

    img = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    msg = image_ns({"format": "png", "data": buf.tobytes()})
    np.testing.assert_array_equal(compressed_to_rgb(msg), img[..., ::-1])


@fuzz_settings(60)
@given(st.integers(1, 300), st.integers(1, 300))
def test_preprocess_rgb_any_size_is_finite_unit_range(h, w):
    rgb = np.full((h, w, 3), 255, np.uint8)
    x = preprocess_rgb(rgb, 64, 64)
    assert x.shape == (1, 3, 64, 64) and np.all(np.isfinite(x))
    np.testing.assert_allclose(x, 1.0)
