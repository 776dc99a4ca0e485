"""Hand-eye calibration: camera <-> robot from robot poses (forward kinematics) and board poses.

Two setups (frames: base = robot base, flange = ``RobotProfile.flange_pose``, cam = the camera's
optical frame, board = the board frame of ``clap_ros.calibration.board``):

- ``eye_in_hand``: the camera is on the flange, the board is fixed in the world.
  Unknown X = flange_T_cam; for every view i, base_T_flange_i @ X @ cam_T_board_i = base_T_board.
- ``eye_to_hand``: the camera is fixed, the board is held by the flange.
  Unknown X = base_T_cam; for every view i,
  inv(base_T_flange_i) @ X @ cam_T_board_i = flange_T_board.

OpenCV solves it: ``cv2.calibrateHandEye`` (tsai, park, horaud, andreff, daniilidis) or
``cv2.calibrateRobotWorldHandEye`` (shah, li; it estimates the constant board pose as well).
``auto`` runs every method and keeps the one with the smallest residual.

Residuals are the per-view consistency of the constant transform above (base_T_board or
flange_T_board): its translation spread in mm and rotation spread in degrees about the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np

from clap_ros.calibration.board import CalibrationError, CalibrationInputError, Detection

SETUPS = ("eye_in_hand", "eye_to_hand")
HAND_EYE_METHODS = ("tsai", "park", "horaud", "andreff", "daniilidis")
ROBOT_WORLD_METHODS = ("shah", "li")
METHODS = HAND_EYE_METHODS + ROBOT_WORLD_METHODS
MIN_VIEWS = 3
FEW_VIEWS = 8
MIN_ROTATION_SPREAD_DEG = 15.0


def _cv_flag(method: str) -> int:
    import cv2

    if method in HAND_EYE_METHODS:
        return getattr(cv2, "CALIB_HAND_EYE_" + method.upper())
    return getattr(cv2, "CALIB_ROBOT_WORLD_HAND_EYE_" + method.upper())


def make_T(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = np.asarray(R, dtype=np.float64).reshape(3, 3)
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def inv_T(T: np.ndarray) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    return make_T(R.T, -R.T @ t)


def rotation_angle_deg(R: np.ndarray) -> float:
    c = (np.trace(np.asarray(R)[:3, :3]) - 1.0) / 2.0
    return math.degrees(math.acos(min(1.0, max(-1.0, c))))


def mean_rotation(Rs: Sequence[np.ndarray]) -> np.ndarray:
    """Chordal L2 mean of rotation matrices (projection of their sum onto SO(3))."""
    U, _, Vt = np.linalg.svd(np.sum(Rs, axis=0))
    R = U @ Vt
    if np.linalg.det(R) < 0:
        U[:, -1] *= -1
        R = U @ Vt
    return R


def board_pose(det: Detection, K: np.ndarray, D: np.ndarray):
    """(cam_T_board 4x4, RMS reprojection error px) by solvePnP on the detected corners."""
    import cv2

    obj = det.object_points.astype(np.float64)
    img = det.image_points.astype(np.float64).reshape(-1, 1, 2)
    flag = cv2.SOLVEPNP_IPPE if len(obj) >= 4 else cv2.SOLVEPNP_ITERATIVE
    ok, rvec, tvec = cv2.solvePnP(obj, img, K, D, flags=flag)
    if not ok:
        raise CalibrationError("solvePnP failed")
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, D, rvec, tvec)
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, D)
    err = float(np.sqrt(np.mean(np.sum((proj - img).reshape(-1, 2) ** 2, axis=1))))
    R, _ = cv2.Rodrigues(rvec)
    return make_T(R, tvec), err


@dataclass
class HandEyeResult:
    setup: str
    method: str
    T: np.ndarray  # flange_T_cam (eye_in_hand) or base_T_cam (eye_to_hand)
    T_board: np.ndarray  # base_T_board (eye_in_hand) or flange_T_board (eye_to_hand)
    translation_residual_mm: List[float]
    rotation_residual_deg: List[float]
    rotation_spread_deg: float  # largest rotation between two robot poses
    alternatives: Dict[str, Dict[str, float]] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    @property
    def rms_translation_mm(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.translation_residual_mm))))

    @property
    def rms_rotation_deg(self) -> float:
        return float(np.sqrt(np.mean(np.square(self.rotation_residual_deg))))

    def summary(self) -> str:
        t = self.T[:3, 3]
        return "\n".join(
            [
                "%s, method %s, %d views"
                % (self.setup, self.method, len(self.translation_residual_mm)),
                "%s: translation [%.4f, %.4f, %.4f] m, rotation %.2f deg"
                % (
                    "flange_T_cam" if self.setup == "eye_in_hand" else "base_T_cam",
                    t[0],
                    t[1],
                    t[2],
                    rotation_angle_deg(self.T[:3, :3]),
                ),
                "residuals: translation RMS %.2f mm (max %.2f), rotation RMS %.3f deg (max %.3f)"
                % (
                    self.rms_translation_mm,
                    max(self.translation_residual_mm),
                    self.rms_rotation_deg,
                    max(self.rotation_residual_deg),
                ),
            ]
        )


def consistency(
    setup: str,
    base_T_flange: Sequence[np.ndarray],
    cam_T_board: Sequence[np.ndarray],
    X: np.ndarray,
):
    """(mean constant transform, per-view translation residual mm, rotation residual deg)."""
    if setup == "eye_in_hand":
        chain = [F @ X @ C for F, C in zip(base_T_flange, cam_T_board)]
    else:
        chain = [inv_T(F) @ X @ C for F, C in zip(base_T_flange, cam_T_board)]
    Rm = mean_rotation([c[:3, :3] for c in chain])
    tm = np.mean([c[:3, 3] for c in chain], axis=0)
    t_res = [1000.0 * float(np.linalg.norm(c[:3, 3] - tm)) for c in chain]
    r_res = [rotation_angle_deg(Rm.T @ c[:3, :3]) for c in chain]
    return make_T(Rm, tm), t_res, r_res


def _solve(setup: str, method: str, F: Sequence[np.ndarray], C: Sequence[np.ndarray]) -> np.ndarray:
    import cv2

    # eye_to_hand is eye_in_hand with the robot poses inverted (the board rides on the flange).
    G = list(F) if setup == "eye_in_hand" else [inv_T(f) for f in F]
    if method in HAND_EYE_METHODS:
        R, t = cv2.calibrateHandEye(
            [g[:3, :3] for g in G],
            [g[:3, 3] for g in G],
            [c[:3, :3] for c in C],
            [c[:3, 3] for c in C],
            method=_cv_flag(method),
        )
        return make_T(R, t)  # gripper_T_cam (eye_in_hand) / base_T_cam (eye_to_hand)
    # Robot-world: cam_T_world = cam_T_gripper @ gripper_T_base @ base_T_world, with world = board.
    Gi = [inv_T(g) for g in G]
    _, _, R_g2c, t_g2c = cv2.calibrateRobotWorldHandEye(
        [c[:3, :3] for c in C],
        [c[:3, 3] for c in C],
        [g[:3, :3] for g in Gi],
        [g[:3, 3] for g in Gi],
        method=_cv_flag(method),
    )
    return inv_T(make_T(R_g2c, t_g2c))


def calibrate_hand_eye(
    base_T_flange: Sequence[np.ndarray],
    cam_T_board: Sequence[np.ndarray],
    setup: str = "eye_in_hand",
    method: str = "park",
) -> HandEyeResult:
    if setup not in SETUPS:
        raise CalibrationInputError(
            "setup must be one of %s, got '%s'" % (", ".join(SETUPS), setup)
        )
    if method != "auto" and method not in METHODS:
        raise CalibrationInputError(
            "method must be one of %s or auto, got '%s'" % (", ".join(METHODS), method)
        )
    F = [np.asarray(f, dtype=np.float64) for f in base_T_flange]
    C = [np.asarray(c, dtype=np.float64) for c in cam_T_board]
    if len(F) != len(C):
        raise CalibrationInputError("%d robot poses but %d board poses" % (len(F), len(C)))
    if len(F) < MIN_VIEWS:
        raise CalibrationError(
            "hand-eye needs at least %d views with the board found, got %d "
            "(%d+ recommended)" % (MIN_VIEWS, len(F), FEW_VIEWS)
        )
    spread = max(rotation_angle_deg(a[:3, :3].T @ b[:3, :3]) for a in F for b in F)
    methods = METHODS if method == "auto" else (method,)
    results = {}
    errors = {}
    for m in methods:
        try:
            X = _solve(setup, m, F, C)
        except Exception as e:  # cv2.error on degenerate input
            errors[m] = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            continue
        if not np.all(np.isfinite(X)):
            errors[m] = "non-finite result"
            continue
        Tb, tr, rr = consistency(setup, F, C, X)
        results[m] = (X, Tb, tr, rr)
    if not results:
        raise CalibrationError(
            "hand-eye failed: %s" % "; ".join("%s: %s" % kv for kv in errors.items())
        )

    def score(m):  # 1 degree weighs like 10 mm (a board ~0.5 m away)
        _, _, tr, rr = results[m]
        return float(np.sqrt(np.mean(np.square(tr)))) + 10.0 * float(
            np.sqrt(np.mean(np.square(rr)))
        )

    best = min(results, key=score)
    X, Tb, tr, rr = results[best]
    alternatives = {
        m: {
            "translation_rms_mm": float(np.sqrt(np.mean(np.square(v[2])))),
            "rotation_rms_deg": float(np.sqrt(np.mean(np.square(v[3])))),
        }
        for m, v in results.items()
    }
    warnings = []
    if len(F) < FEW_VIEWS:
        warnings.append("few views: %d (>= %d recommended)" % (len(F), FEW_VIEWS))
    if spread < MIN_ROTATION_SPREAD_DEG:
        warnings.append(
            "the robot poses differ by at most %.1f degrees of rotation (< %.0f): "
            "rotate the flange about different axes between views"
            % (spread, MIN_ROTATION_SPREAD_DEG)
        )
    return HandEyeResult(
        setup=setup,
        method=best,
        T=X,
        T_board=Tb,
        translation_residual_mm=tr,
        rotation_residual_deg=rr,
        rotation_spread_deg=spread,
        alternatives=alternatives,
        warnings=warnings,
    )
