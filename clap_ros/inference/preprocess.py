"""Camera image -> encoder input, exactly as training prepared its frames.

Training (``clap_train.data.resize_frames`` + ``frames_to_unit``) resizes uint8 RGB frames with
cv2.INTER_AREA and divides by 255; the encoder graph applies mean/std itself. Any other resize
filter or colour order shifts the input distribution the policy was trained on, so this module is
the runtime's single copy of that recipe. Optional undistortion uses the camera's K/D
(sensor_msgs/CameraInfo or a camera_info YAML) before resizing, because training frames came from
an ideal pinhole camera.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from clap_ros.data.images import ImageEncodingError, clip_text, image_to_numpy, to_rgb

ACCEPTED_ENCODINGS = ("rgb8", "bgr8", "mono8")


def rgb_from_array(arr: np.ndarray, encoding: str) -> np.ndarray:
    """uint8 HxWx3 RGB from an array in one of the accepted encodings; others are rejected."""
    if encoding not in ACCEPTED_ENCODINGS:
        raise ImageEncodingError(f"image encoding '{clip_text(encoding)}' is not accepted by the "
                                 f"encoder (accepted: {', '.join(ACCEPTED_ENCODINGS)})")
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise ImageEncodingError(f"{encoding} image must be uint8, got {arr.dtype}")
    if encoding == "mono8" and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    want = 2 if encoding == "mono8" else 3
    if arr.ndim != want or (want == 3 and arr.shape[2] != 3) or min(arr.shape[:2]) < 1:
        raise ImageEncodingError(f"{encoding} image has shape {arr.shape}; expected "
                                 f"{'HxW' if want == 2 else 'HxWx3'}")
    return np.ascontiguousarray(to_rgb(arr, encoding))


def rgb_from_msg(msg: Any) -> np.ndarray:
    """uint8 HxWx3 RGB from a sensor_msgs/Image (rclpy or rosbags) in an accepted encoding."""
    if msg.encoding not in ACCEPTED_ENCODINGS:
        raise ImageEncodingError(f"image encoding '{clip_text(msg.encoding)}' is not accepted by "
                                 f"the encoder (accepted: {', '.join(ACCEPTED_ENCODINGS)})")
    return rgb_from_array(image_to_numpy(msg), msg.encoding)


@dataclass(frozen=True)
class Calibration:
    """Pinhole intrinsics K (3x3) and distortion D (plumb_bob / rational_polynomial) of the image
    size they were calibrated at."""
    K: np.ndarray
    D: np.ndarray
    width: int
    height: int

    @classmethod
    def from_camera_info(cls, info: Any) -> "Calibration":
        """From a sensor_msgs/CameraInfo message or a dict with the same fields (``k``/``K``,
        ``d``/``D``, ``width``, ``height``), or a camera_info_manager YAML dict."""
        def get(*names):
            for n in names:
                if isinstance(info, dict) and n in info:
                    return info[n]
                if not isinstance(info, dict) and hasattr(info, n):
                    return getattr(info, n)
            raise ValueError(f"camera info has none of the fields {names}")

        K = get("k", "K", "camera_matrix")
        D = get("d", "D", "distortion_coefficients")
        if isinstance(K, dict):
            K = K["data"]
        if isinstance(D, dict):
            D = D["data"]
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        D = np.asarray(D, dtype=np.float64).reshape(-1)
        w, h = int(get("width", "image_width")), int(get("height", "image_height"))
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"camera matrix K is invalid: {K.tolist()}")
        if not np.all(np.isfinite(D)):
            raise ValueError(f"distortion coefficients are not finite: {D.tolist()}")
        return cls(K=K, D=D, width=w, height=h)

    @property
    def distorted(self) -> bool:
        return bool(self.D.size and np.any(self.D != 0.0))


class Preprocessor:
    """Image (uint8 RGB) -> float32 [1, 3, H, W] in [0, 1] for encoder.onnx.

    With a calibration, the image is undistorted first (the undistortion maps are computed once
    and reused; a frame of another size than the calibration's is an error, not a silent
    mis-rectification)."""

    def __init__(self, height: int, width: int, calibration: Optional[Calibration] = None):
        if int(height) < 1 or int(width) < 1:
            raise ValueError(f"target size must be positive, got {height}x{width}")
        self.height, self.width = int(height), int(width)
        self.calibration = calibration
        self._maps = None

    def undistort(self, rgb: np.ndarray) -> np.ndarray:
        cal = self.calibration
        if cal is None or not cal.distorted:
            return rgb
        h, w = rgb.shape[:2]
        if (w, h) != (cal.width, cal.height):
            raise ImageEncodingError(f"image is {w}x{h} but the calibration is for "
                                     f"{cal.width}x{cal.height}")
        import cv2
        if self._maps is None:
            self._maps = cv2.initUndistortRectifyMap(cal.K, cal.D, None, cal.K, (w, h), cv2.CV_32FC1)
        return cv2.remap(rgb, self._maps[0], self._maps[1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ImageEncodingError(f"expected uint8 HxWx3 RGB, got {rgb.dtype} {rgb.shape}")
        rgb = self.undistort(rgb)
        return preprocess_rgb(rgb, self.height, self.width)


def preprocess_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 [1, 3, height, width] in [0, 1] (cv2.INTER_AREA, as training)."""
    if rgb.shape[0] != height or rgb.shape[1] != width:
        import cv2
        # cv2 rejects negative-stride views (e.g. bgr[..., ::-1])
        rgb = cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=cv2.INTER_AREA)
    out = rgb.transpose(2, 0, 1)[None].astype(np.float32)
    out /= np.float32(255.0)  # divide (not multiply by 1/255): bit-identical to training
    return np.ascontiguousarray(out)


def undistort_image(image: np.ndarray, K: Sequence, D: Sequence) -> np.ndarray:
    """One-off undistortion with cv2.undistort (same camera matrix kept)."""
    import cv2
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    D = np.asarray(D, dtype=np.float64).reshape(-1)
    return cv2.undistort(image, K, D, None, K)
