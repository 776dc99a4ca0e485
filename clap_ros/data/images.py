"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Works on rosbags message objects and rclpy messages alike (same field names). Decoding honours
``step`` (rows may be padded) and ``is_bigendian``; an unsupported encoding is an ImageEncodingError
that names it and lists the supported ones.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

# encoding -> (channels, numpy dtype)
ENCODINGS: Dict[str, Tuple[int, np.dtype]] = {
    "rgb8": (3, np.dtype(np.uint8)),
    "bgr8": (3, np.dtype(np.uint8)),
    "rgba8": (4, np.dtype(np.uint8)),
    "bgra8": (4, np.dtype(np.uint8)),
    "mono8": (1, np.dtype(np.uint8)),
    "8UC1": (1, np.dtype(np.uint8)),
    "8UC3": (3, np.dtype(np.uint8)),
    "mono16": (1, np.dtype(np.uint16)),
    "16UC1": (1, np.dtype(np.uint16)),
    "32FC1": (1, np.dtype(np.float32)),
}


class ImageEncodingError(ValueError):
    """An image message or array that cannot be converted; the message names the problem."""


def clip_text(text: Any, limit: int = 64) -> str:
    """A field from a message, cut to ``limit`` characters for an error: a garbage encoding or
    format string must not turn into a megabyte log line."""
    s = str(text)
    return s if len(s) <= limit else "%s... (%d characters)" % (s[:limit], len(s))


def _spec(encoding: str) -> Tuple[int, np.dtype]:
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ImageEncodingError(
            "unsupported image encoding '%s' (supported: %s)"
            % (clip_text(encoding), ", ".join(ENCODINGS))
        ) from None


def _as_bytes(data: Any) -> np.ndarray:
    """The message's data field as a flat uint8 array, without copying where possible."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)


def image_to_numpy(msg: Any) -> np.ndarray:
    """HxW (one channel) or HxWxC array, in the message's own channel order and dtype."""
    channels, dtype = _spec(msg.encoding)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageEncodingError(
            "image %dx%d %s: step %d is smaller than a row (%d bytes)"
            % (w, h, msg.encoding, step, row_bytes)
        )
    buf = _as_bytes(msg.data)
    if buf.size < step * h:
        raise ImageEncodingError(
            "image %dx%d %s: %d data bytes, expected step*height = %d"
            % (w, h, msg.encoding, buf.size, step * h)
        )
    rows = buf[: step * h].reshape(h, step)[:, :row_bytes]
    order = ">" if msg.is_bigendian else "<"
    arr = np.ascontiguousarray(rows).view(
        dtype.newbyteorder(order) if dtype.itemsize > 1 else dtype
    )
    arr = arr.reshape(h, w, channels) if channels > 1 else arr.reshape(h, w)
    if dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="), copy=False)
    return arr


def image_to_rgb(msg: Any) -> np.ndarray:
    """uint8 HxWx3 RGB from an 8-bit colour or mono image message."""
    return to_rgb(image_to_numpy(msg), msg.encoding)


def to_rgb(arr: np.ndarray, encoding: str) -> np.ndarray:
    """uint8 HxWx3 RGB from an array in ``encoding`` (8-bit encodings only)."""
    channels, dtype = _spec(encoding)
    if dtype != np.uint8:
        raise ImageEncodingError(
            "cannot show encoding '%s' as RGB (only 8-bit encodings)" % encoding
        )
    if encoding in ("rgb8", "8UC3"):
        return arr
    if encoding == "bgr8":
        return arr[..., ::-1]
    if encoding == "rgba8":
        return arr[..., :3]
    if encoding == "bgra8":
        return arr[..., 2::-1]
    return np.repeat(arr[..., None], 3, axis=2)  # mono8 / 8UC1


def numpy_to_image_fields(array: np.ndarray, encoding: str = "rgb8") -> Dict[str, Any]:
    """Fields of a sensor_msgs/Image (height, width, encoding, is_bigendian, step, data) for an
    array already in ``encoding``'s channel order; rows are unpadded, data little-endian."""
    channels, dtype = _spec(encoding)
    arr = np.asarray(array)
    if arr.dtype != dtype:
        raise ImageEncodingError(
            "encoding '%s' needs dtype %s, got %s" % (encoding, dtype, arr.dtype)
        )
    if channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    want_ndim = 2 if channels == 1 else 3
    if arr.ndim != want_ndim or (channels > 1 and arr.shape[2] != channels):
        raise ImageEncodingError(
            "encoding '%s' needs shape %s, got %s"
            % (encoding, "HxW" if channels == 1 else "HxWx%d" % channels, arr.shape)
        )
    h, w = arr.shape[:2]
    data = (
        np.ascontiguousarray(arr.astype(dtype.newbyteorder("<"), copy=False))
        .reshape(-1)
        .view(np.uint8)
    )
    return {
        "height": int(h),
        "width": int(w),
        "encoding": encoding,
        "is_bigendian": 0,
        "step": int(w * channels * dtype.itemsize),
        "data": data,
    }


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """uint8 HxWx3 RGB from a sensor_msgs/CompressedImage (jpeg or png)."""
    import cv2

    fmt = str(msg.format).lower()
    # Some drivers leave format empty; cv2 then tells the codec from the data's magic bytes.
    if fmt.strip() and not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise ImageEncodingError(
            "unsupported compressed image format '%s' (jpeg or png)" % clip_text(msg.format)
        )
    buf = _as_bytes(msg.data)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    except cv2.error:  # truncated or malformed streams can trip an OpenCV assertion
        img = None
    if img is None:
        raise ImageEncodingError(
            "compressed image (format '%s', %d bytes) does not decode"
            % (clip_text(msg.format), buf.size)
        )
    if img.dtype != np.uint8:  # 16-bit PNG, mono or colour
        img = (img / 257).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def message_to_rgb(msg: Any) -> np.ndarray:
    """RGB uint8 from either an Image or a CompressedImage message."""
    if hasattr(msg, "encoding"):
        return image_to_rgb(msg)
    return compressed_to_rgb(msg)


# What bag2dataset takes from a camera topic: the common 8-bit colour and mono formats. Deeper
# formats (mono16, 32FC1) are depth or raw sensor data, not something to put in an RGB video.
RGB_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")


def decode_image_msg(msg: Any, msgtype: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB from a sensor_msgs/Image (RGB_ENCODINGS) or CompressedImage (jpeg,
    png) message; ``msgtype`` is the bag's type name (``sensor_msgs/msg/Image`` or
    ``sensor_msgs/msg/CompressedImage``). Anything else is an ImageEncodingError naming it."""
    kind = str(msgtype).rsplit("/", 1)[-1]
    if kind == "Image":
        if msg.encoding not in RGB_ENCODINGS:
            raise ImageEncodingError(
                "unsupported image encoding '%s' for an RGB camera (supported: "
                "%s)" % (clip_text(msg.encoding), ", ".join(RGB_ENCODINGS))
            )
        return np.ascontiguousarray(image_to_rgb(msg))
    if kind == "CompressedImage":
        return np.ascontiguousarray(compressed_to_rgb(msg))
    raise ImageEncodingError(
        "message type '%s' is not an image (sensor_msgs/msg/Image or "
        "sensor_msgs/msg/CompressedImage)" % clip_text(msgtype)
    )
