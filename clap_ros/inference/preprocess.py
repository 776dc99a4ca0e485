"""Camera image -> encoder input: the one recipe, shared by training and the runtime.

Recipe ``rgb_area_unit`` version 1: uint8 RGB frames are resized with cv2.INTER_AREA to the
encoder's size (:func:`resize_rgb`), laid out CHW and divided by 255 (:func:`to_unit`); the
encoder graph applies the ImageNet mean/std (:data:`ENCODER_MEAN`, :data:`ENCODER_STD`) itself.
Training imports these functions (``clap_train.data.resize_frames``, the NTP/RF batches, the
ObsEncoder's mean/std), so a change here changes both sides at once; any other resize filter or
colour order shifts the input distribution the policy was trained on. The exporter writes
:meth:`PreprocessingSpec.to_manifest` into the bundle and :func:`spec_from_manifest` (called by
``load_bundle``) refuses a bundle whose recipe this runtime does not know.

Optional undistortion uses the camera's K/D (sensor_msgs/CameraInfo or a camera_info YAML) before
resizing, because training frames came from an ideal pinhole camera. Torch-free: :func:`to_unit`
also takes torch tensors, duck-typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from clap_ros.data.images import ImageEncodingError, clip_text, image_to_numpy, to_rgb

ACCEPTED_ENCODINGS = ("rgb8", "bgr8", "mono8")

PREPROCESSING = "rgb_area_unit"
PREPROCESSING_VERSION = 1
# Applied inside the encoder graph (training's ObsEncoder takes these), recorded in the manifest.
ENCODER_MEAN = (0.485, 0.456, 0.406)
ENCODER_STD = (0.229, 0.224, 0.225)


class PreprocessingError(ValueError):
    """A bundle asks for an image preprocessing this runtime does not implement."""


@dataclass(frozen=True)
class PreprocessingSpec:
    """What the bundle's encoder expects: the recipe by name and version, and its input size."""

    name: str
    version: int
    height: int
    width: int

    def to_manifest(self) -> Dict[str, Any]:
        """The bundle manifest's ``preprocessing`` entry (name, version and size are checked on
        load; the rest says in words what the recipe does)."""
        return {
            "name": self.name,
            "version": self.version,
            "size": [self.height, self.width],
            "input": "uint8 RGB HxWx3",
            "resize": "cv2.INTER_AREA to size (h, w)",
            "scale": "divide by 255 -> float32 [0, 1], NCHW",
            "mean": list(ENCODER_MEAN),
            "std": list(ENCODER_STD),
            "mean_std": "applied inside the encoder graph",
        }


def preprocessing_spec(height: int, width: int) -> PreprocessingSpec:
    """This code's recipe for an encoder input of ``height`` x ``width``."""
    return PreprocessingSpec(PREPROCESSING, PREPROCESSING_VERSION, int(height), int(width))


def spec_from_manifest(
    entry: Optional[Mapping[str, Any]], height: int, width: int
) -> PreprocessingSpec:
    """The recipe a manifest names, checked against what this runtime implements and against the
    image size the manifest gives the encoder. No entry (bundles exported before the field
    existed, such as the first models/default) means rgb_area_unit v1: what they were trained on."""
    if entry is None:
        return preprocessing_spec(height, width)
    if not isinstance(entry, Mapping):
        raise PreprocessingError(
            f"preprocessing must be a mapping with name, version and size, got {entry!r}"
        )
    name, version = entry.get("name"), entry.get("version")
    if (name, version) != (PREPROCESSING, PREPROCESSING_VERSION):
        raise PreprocessingError(
            f"the bundle's image preprocessing is {name!r} version {version!r}; this runtime "
            f"implements only {PREPROCESSING!r} version {PREPROCESSING_VERSION} "
            "(clap_ros/inference/preprocess.py): update clap_ros to the version the bundle was "
            "exported with, or re-export the bundle with this one"
        )
    size = entry.get("size")
    if not isinstance(size, (list, tuple)) or list(size) != [int(height), int(width)]:
        raise PreprocessingError(
            f"preprocessing.size {size!r} differs from the encoder input "
            f"size {height}x{width} of the manifest's image entry"
        )
    return preprocessing_spec(height, width)


def rgb_from_array(arr: np.ndarray, encoding: str) -> np.ndarray:
    """uint8 HxWx3 RGB from an array in one of the accepted encodings; others are rejected."""
    if encoding not in ACCEPTED_ENCODINGS:
        raise ImageEncodingError(
            f"image encoding '{clip_text(encoding)}' is not accepted by the "
            f"encoder (accepted: {', '.join(ACCEPTED_ENCODINGS)})"
        )
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise ImageEncodingError(f"{encoding} image must be uint8, got {arr.dtype}")
    if encoding == "mono8" and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    want = 2 if encoding == "mono8" else 3
    if arr.ndim != want or (want == 3 and arr.shape[2] != 3) or min(arr.shape[:2]) < 1:
        raise ImageEncodingError(
            f"{encoding} image has shape {arr.shape}; expected {'HxW' if want == 2 else 'HxWx3'}"
        )
    return np.ascontiguousarray(to_rgb(arr, encoding))


def rgb_from_msg(msg: Any) -> np.ndarray:
    """uint8 HxWx3 RGB from a sensor_msgs/Image (rclpy or rosbags) in an accepted encoding."""
    if msg.encoding not in ACCEPTED_ENCODINGS:
        raise ImageEncodingError(
            f"image encoding '{clip_text(msg.encoding)}' is not accepted by "
            f"the encoder (accepted: {', '.join(ACCEPTED_ENCODINGS)})"
        )
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
        # the sizes OpenCV's distortion models take (plumb_bob 5, rational_polynomial 8, ...);
        # any other count would fail inside cv2 at the first frame instead of here
        if D.size not in (0, 4, 5, 8, 12, 14):
            raise ValueError(f"{D.size} distortion coefficients: expected 4, 5, 8, 12 or 14")
        if w < 1 or h < 1:
            raise ValueError(f"camera info size {w}x{h} is not positive")
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
        self._maps: Optional[Any] = None

    @classmethod
    def for_bundle(cls, bundle: Any, calibration: Optional[Calibration] = None) -> "Preprocessor":
        """The preprocessor of a loaded bundle (whose recipe load_bundle has already checked)."""
        spec = bundle.preprocessing
        return cls(spec.height, spec.width, calibration)

    def undistort(self, rgb: np.ndarray) -> np.ndarray:
        cal = self.calibration
        if cal is None or not cal.distorted:
            return rgb
        h, w = rgb.shape[:2]
        if (w, h) != (cal.width, cal.height):
            raise ImageEncodingError(
                f"image is {w}x{h} but the calibration is for {cal.width}x{cal.height}"
            )
        import cv2

        if self._maps is None:
            self._maps = cv2.initUndistortRectifyMap(
                cal.K, cal.D, None, cal.K, (w, h), cv2.CV_32FC1
            )
        return cv2.remap(
            rgb, self._maps[0], self._maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
            raise ImageEncodingError(f"expected uint8 HxWx3 RGB, got {rgb.dtype} {rgb.shape}")
        rgb = self.undistort(rgb)
        return preprocess_rgb(rgb, self.height, self.width)


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 HxWx3 -> uint8 height x width x 3 with cv2.INTER_AREA (as is when already so)."""
    if rgb.shape[0] != height or rgb.shape[1] != width:
        import cv2

        # cv2 rejects negative-stride views (e.g. bgr[..., ::-1])
        rgb = cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=cv2.INTER_AREA)
    return rgb


def to_unit(x: Any) -> Any:
    """uint8 pixels -> float32 in [0, 1]: a numpy array, or a torch tensor (training's batches;
    duck-typed, so the runtime never imports torch). Both divide in float32 (not multiply by
    1/255), so the results are bit-identical."""
    if isinstance(x, np.ndarray) or np.isscalar(x):
        out = np.asarray(x).astype(np.float32)
        out /= np.float32(255.0)
        return out
    return x.float() / 255.0


def preprocess_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 [1, 3, height, width] in [0, 1] (the rgb_area_unit recipe)."""
    chw = resize_rgb(rgb, height, width).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(to_unit(chw))


def undistort_image(image: np.ndarray, K: Sequence, D: Sequence) -> np.ndarray:
    """One-off undistortion with cv2.undistort (same camera matrix kept)."""
    import cv2

    k = np.asarray(K, dtype=np.float64).reshape(3, 3)
    d = np.asarray(D, dtype=np.float64).reshape(-1)
    return np.asarray(cv2.undistort(image, k, d, None, k))
