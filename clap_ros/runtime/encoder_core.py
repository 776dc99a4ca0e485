"""The encoder node's logic without ROS: image + stamp -> checked, preprocessed -> latent.

``EncoderCore(runtime, params)``:

* ``set_camera_info(info)``: a CameraInfo (or anything with its fields, or a ``Calibration``)
  becomes the preprocessor's calibration; a bad one is refused (the previous one stays). A
  ``calibration_file`` given at start-up (``calibration=``) wins: CameraInfo is then ignored.
* ``admit(now)``: whether a frame arriving at ``now`` is encoded at all (``max_rate_hz``, the
  calibration requirement), cheap, before any decoding;
* ``encode(image, stamp, now)``: an RGB array or an Image-like message (``encoding``, ``height``,
  ``width``, ``step``, ``data``) -> ``EncodeResult`` with the latent or the refusal reason.

Every refusal is counted in ``counters`` (the node's diagnostics) under a stable key; nothing
raises out of ``encode`` for a bad input. ``now`` is any monotonic clock the caller uses
consistently (the node: time.monotonic; the VirtualStack: its virtual clock).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np

from clap_ros.runtime.messages import clip_text
from clap_ros.runtime.params import EncoderParams

# refusal keys (counters and diagnostics problems)
RATE = "frames_skipped_rate"
NO_CALIBRATION = "frames_waiting_calibration"
REJECTED = "frames_rejected"
INFERENCE = "inference_errors"


@dataclass
class EncodeResult:
    """One frame's outcome: ``latent`` [tokens, dim] float32, or ``refused`` (a key above) and
    ``reason`` (one line). ``seconds``: wall time of decode + preprocess + encode."""

    stamp: float
    latent: Optional[np.ndarray] = None
    refused: str = ""
    reason: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.latent is not None


class EncoderCore:
    def __init__(
        self,
        runtime,
        params: Optional[EncoderParams] = None,
        calibration=None,
        perf=time.perf_counter,
    ):
        self.params = (params or EncoderParams()).validate()
        self.runtime = runtime
        self.bundle = runtime.bundle
        self.perf = perf
        self._lock = threading.Lock()  # preprocessor swap (callback) vs encode (worker)
        self._from_file = calibration is not None
        self._have_cal = calibration is not None
        self._info_key: Any = None
        if calibration is not None:
            self._use(calibration)
        self._last_encode = -1e18
        self.counters: Dict[str, int] = {
            "frames_in": 0,
            "latents": 0,
            RATE: 0,
            NO_CALIBRATION: 0,
            REJECTED: 0,
            INFERENCE: 0,
            "camera_info_refused": 0,
        }
        self.last_reason = ""

    # --- calibration ---------------------------------------------------------------------------
    @property
    def calibrated(self) -> bool:
        return self._have_cal

    def set_camera_info(self, info: Any) -> Optional[str]:
        """Use ``info``'s calibration. Returns None when taken (or unchanged, or ignored because
        a calibration file is in use), else why it was refused (counted)."""
        from clap_ros.inference.preprocess import Calibration

        if self._from_file:
            return None
        if isinstance(info, Calibration):
            cal = info
            key: Any = ("cal", id(info))
        else:
            try:
                key = (
                    int(info.width),
                    int(info.height),
                    tuple(float(v) for v in info.k),
                    tuple(float(v) for v in info.d),
                )
            except (AttributeError, TypeError, ValueError) as e:
                self.counters["camera_info_refused"] += 1
                return "bad CameraInfo: %s" % e
            if key == self._info_key:
                return None
            try:
                cal = Calibration.from_camera_info(info)
            except Exception as e:  # noqa: BLE001 - any malformed CameraInfo is refused
                self.counters["camera_info_refused"] += 1
                return "bad CameraInfo: %s" % e
        self._use(cal)
        self._info_key = key
        return None

    def _use(self, cal) -> None:
        from clap_ros.inference.preprocess import Preprocessor

        b = self.bundle
        with self._lock:
            self.runtime.preprocessor = Preprocessor(b.image_height, b.image_width, cal)
            self._have_cal = True

    # --- frames --------------------------------------------------------------------------------
    def admit(self, now: float) -> Optional[EncodeResult]:
        """None when a frame at ``now`` is to be encoded, else the refusal (rate or calibration)."""
        p = self.params
        if p.max_rate_hz > 0 and now - self._last_encode < 1.0 / p.max_rate_hz:
            return self._refuse(0.0, RATE, "")
        if p.require_camera_info and not self._have_cal:
            return self._refuse(
                0.0,
                NO_CALIBRATION,
                "dropping frames until a CameraInfo arrives (or set "
                "calibration_file, or require_camera_info:=false)",
            )
        return None

    def encode(self, image: Any, stamp: float, now: float, admitted: bool = False) -> EncodeResult:
        """The latent of ``image`` (RGB uint8 HxWx3 array, or an Image-like message), or the
        reason it is refused. ``admitted``: the caller already called ``admit``."""
        from clap_ros.data.images import ImageEncodingError
        from clap_ros.inference.policy import InferenceError
        from clap_ros.inference.preprocess import rgb_from_msg

        self.counters["frames_in"] += 1
        if not admitted:
            refused = self.admit(now)
            if refused is not None:
                refused.stamp = float(stamp)
                return refused
        t0 = self.perf()
        try:
            if isinstance(image, np.ndarray):
                if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                    raise ImageEncodingError(
                        "expected a uint8 HxWx3 RGB array, got %s %s"
                        % (image.dtype, list(image.shape))
                    )
                rgb = image
            else:
                rgb = rgb_from_msg(image)
            with self._lock:
                latent = self.runtime.encode(rgb)
        except ImageEncodingError as e:
            return self._refuse(stamp, REJECTED, "rejected frame: %s" % e)
        except InferenceError as e:
            return self._refuse(stamp, INFERENCE, "encoder: %s; nothing published" % e)
        except Exception as e:  # noqa: BLE001 - a malformed frame (data shorter than step *
            # height, a missing field) or one OpenCV cannot undistort/resize: never an exception
            # out of the core
            return self._refuse(
                stamp,
                REJECTED,
                "rejected frame: %s: %s" % (type(e).__name__, clip_text(e, 200, quote=False)),
            )
        lat = np.asarray(latent, dtype=np.float32)
        if not np.all(np.isfinite(lat)):
            return self._refuse(
                stamp, INFERENCE, "encoder: latent has non-finite values; nothing published"
            )
        self._last_encode = now
        self.counters["latents"] += 1
        self.last_reason = ""
        return EncodeResult(float(stamp), latent=lat, seconds=self.perf() - t0)

    def _refuse(self, stamp: float, key: str, reason: str) -> EncodeResult:
        self.counters[key] += 1
        self.last_reason = reason
        return EncodeResult(float(stamp), refused=key, reason=reason)

    def diagnostics(self) -> Dict[str, Any]:
        d: Dict[str, Any] = dict(self.counters)
        d["calibrated"] = self._have_cal
        if self.last_reason:
            d["last_refusal"] = self.last_reason
        return d
