"""Camera intrinsics from board views (cv2.calibrateCamera), with quality figures.

Quality reported with every result: the RMS reprojection error over all corners, each view's RMS,
and the *coverage*: the fraction of the image area inside the union of the views' corner hulls.
Distortion is only constrained where corners were seen, so a calibration whose corners cover less
than about half the image (or that has few views) is reported with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np

from clap_ros.calibration.board import Board, CalibrationError, CalibrationInputError, Detection

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial")
MIN_VIEWS = 3  # fewer is an error
FEW_VIEWS = 10  # fewer is a warning
MIN_COVERAGE = 0.5  # image-area fraction below which a warning is given
MAX_GOOD_RMS_PX = 1.0


@dataclass
class IntrinsicsResult:
    K: np.ndarray
    D: np.ndarray
    width: int
    height: int
    distortion_model: str
    rms_px: float
    per_view_rms_px: List[float]
    views: List[str]  # names of the views used
    skipped: List[str]  # names of images without a usable board
    coverage: float
    warnings: List[str] = field(default_factory=list)

    def summary(self) -> str:
        fx, fy, cx, cy = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2]
        lines = [
            "%d views used (%d skipped), image %dx%d"
            % (len(self.views), len(self.skipped), self.width, self.height),
            "fx %.2f  fy %.2f  cx %.2f  cy %.2f  (px)" % (fx, fy, cx, cy),
            "distortion (%s): %s" % (self.distortion_model, " ".join("%.5f" % d for d in self.D)),
            "RMS reprojection error %.3f px (worst view %.3f px: %s)"
            % (
                self.rms_px,
                max(self.per_view_rms_px),
                self.views[int(np.argmax(self.per_view_rms_px))],
            ),
            "coverage %.0f%% of the image area" % (100 * self.coverage),
        ]
        return "\n".join(lines)


def coverage_fraction(detections: Sequence[Detection], width: int, height: int) -> float:
    """Fraction of the image inside the union of the convex hulls of each view's corners."""
    import cv2

    scale = min(1.0, 400.0 / max(width, height))  # a coarse mask is plenty
    w, h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    mask = np.zeros((h, w), np.uint8)
    for det in detections:
        pts = (det.image_points * scale).astype(np.float32)
        if len(pts) < 3:
            continue
        hull = cv2.convexHull(pts).reshape(-1, 2)
        cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32), 1)
    return float(mask.mean())


def detect_all(
    frames: Sequence[Tuple[str, np.ndarray]], board: Board
) -> Tuple[List[Tuple[str, Detection]], List[str], Tuple[int, int]]:
    """(name, detection) for each frame where the board is found, skipped names, (width, height).
    All frames must have the same size."""
    if not frames:
        raise CalibrationInputError("no images given")
    size = None
    found, skipped = [], []
    for name, img in frames:
        img = np.asarray(img)
        s = (int(img.shape[1]), int(img.shape[0]))
        if size is None:
            size = s
        elif s != size:
            raise CalibrationInputError(
                "image %s is %dx%d but the first image is %dx%d: "
                "all views must come from one camera mode" % (name, s[0], s[1], size[0], size[1])
            )
        det = board.detect(img)
        if det is None:
            skipped.append(name)
        else:
            found.append((name, det))
    return found, skipped, size


def calibrate_intrinsics(
    frames: Sequence[Tuple[str, np.ndarray]],
    board: Board,
    distortion_model: str = "plumb_bob",
    max_views: int = 0,
    min_coverage: float = MIN_COVERAGE,
) -> IntrinsicsResult:
    """Calibrate from (name, uint8 image) pairs. ``max_views`` > 0 keeps that many views, evenly
    spread over the detections (long bag recordings)."""
    import cv2

    if distortion_model not in DISTORTION_MODELS:
        raise CalibrationInputError(
            "distortion model must be one of %s, got '%s'"
            % (", ".join(DISTORTION_MODELS), distortion_model)
        )
    found, skipped, (w, h) = detect_all(frames, board)
    if not found:
        raise CalibrationError(
            "the %s board (%dx%d squares) was not found in any of the %d images"
            % (board.kind, board.cols, board.rows, len(frames))
        )
    if max_views and len(found) > max_views:
        keep = np.unique(np.linspace(0, len(found) - 1, int(max_views)).round().astype(int))
        found = [found[i] for i in keep]
    if len(found) < MIN_VIEWS:
        raise CalibrationError(
            "the board was found in only %d image(s); at least %d views are "
            "needed (%d recommended), at different distances and tilts"
            % (len(found), MIN_VIEWS, FEW_VIEWS)
        )
    obj = [d.object_points.astype(np.float32) for _, d in found]
    img = [d.image_points.astype(np.float32).reshape(-1, 1, 2) for _, d in found]
    flags = cv2.CALIB_RATIONAL_MODEL if distortion_model == "rational_polynomial" else 0
    crit = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-10)
    try:
        rms, K, D, rvecs, tvecs = cv2.calibrateCamera(
            obj, img, (w, h), None, None, flags=flags, criteria=crit
        )
    except cv2.error as e:
        raise CalibrationError("cv2.calibrateCamera failed: %s" % str(e).strip()) from None
    D = np.asarray(D, dtype=np.float64).reshape(-1)[: (8 if flags else 5)]
    per_view = []
    for o, i, r, t in zip(obj, img, rvecs, tvecs):
        proj, _ = cv2.projectPoints(o, r, t, K, D)
        per_view.append(float(np.sqrt(np.mean(np.sum((proj - i).reshape(-1, 2) ** 2, axis=1)))))
    cov = coverage_fraction([d for _, d in found], w, h)
    warnings = []
    if cov < min_coverage:
        warnings.append(
            "poor coverage: detected corners cover %.0f%% of the image (< %.0f%%); "
            "move the board into the corners and edges of the image, or the "
            "distortion estimate is unreliable there" % (100 * cov, 100 * min_coverage)
        )
    if len(found) < FEW_VIEWS:
        warnings.append(
            "few views: %d (>= %d recommended, with the board tilted up to ~45 "
            "degrees in different directions)" % (len(found), FEW_VIEWS)
        )
    if rms > MAX_GOOD_RMS_PX:
        warnings.append(
            "high RMS reprojection error %.2f px (> %.1f): blurred or misdetected "
            "views, a non-flat board, or the wrong board size" % (rms, MAX_GOOD_RMS_PX)
        )
    if not (np.all(np.isfinite(K)) and K[0, 0] > 0 and K[1, 1] > 0):
        raise CalibrationError("calibration diverged (K = %s)" % K.tolist())
    return IntrinsicsResult(
        K=np.asarray(K, dtype=np.float64),
        D=D,
        width=w,
        height=h,
        distortion_model=distortion_model,
        rms_px=float(rms),
        per_view_rms_px=per_view,
        views=[n for n, _ in found],
        skipped=skipped,
        coverage=cov,
        warnings=warnings,
    )
