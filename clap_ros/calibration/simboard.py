"""Ground truth for calibration from MuJoCo: a board of known size seen by a camera of known
intrinsics at known poses.

``BoardScene`` is a small standalone MJCF: the board picture (``Board.render``) as the texture of a
thin slab whose texture coordinates map the picture exactly onto its physical size, and a camera
(fovy -> K as ``SimWorld.camera_info``) on a mocap body; board and camera poses are set per
render. Flat unlit shading (headlight ambient only) keeps the board's black and white exact.

View generators give board views for intrinsics and robot poses (through the profile's forward
kinematics) for eye-in-hand / eye-to-hand, with the true hand-eye transform.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from clap_ros.calibration.board import Board
from clap_ros.calibration.handeye import inv_T, make_T

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

# MuJoCo camera frame (looks along -z, y up) from the optical frame (z forward, y down): and back.
_MJ_FROM_OPTICAL = np.diag([1.0, -1.0, -1.0])


def _fmt(a) -> str:
    return " ".join("%.9g" % x for x in np.ravel(a))


def camera_matrix(width: int, height: int, fovy_deg: float) -> np.ndarray:
    """K of a MuJoCo camera: square pixels, principal point at the image centre."""
    f = height / (2.0 * math.tan(math.radians(fovy_deg) / 2.0))
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """world_T_optical for a camera at ``eye`` looking at ``target`` (image y roughly -up)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, float))
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, [1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_T(np.stack([x, y, z], axis=1), eye)


def rot_axis_angle(axis, angle: float) -> np.ndarray:
    import cv2

    axis = np.asarray(axis, float)
    axis = axis / np.linalg.norm(axis)
    R, _ = cv2.Rodrigues(axis * float(angle))
    return R


class BoardScene:
    """A board and a camera in an empty MuJoCo world; ``render(world_T_cam, world_T_board)``."""

    def __init__(
        self,
        board: Board,
        image_size: Tuple[int, int] = (480, 640),
        fovy: float = 50.0,
        px_per_square: int = 64,
        background=(0.35, 0.4, 0.45),
    ):
        import cv2
        import mujoco

        self._mj = mujoco
        self.board = board
        self.height, self.width = int(image_size[0]), int(image_size[1])
        self.fovy = float(fovy)
        picture = board.render(px_per_square)
        self._tmp = tempfile.TemporaryDirectory(prefix="clap_board_")
        tex = Path(self._tmp.name) / "board.png"
        cv2.imwrite(str(tex), picture)
        # Picture pixel (0, 0)'s outer corner sits at squares_origin - margin in the board frame.
        m = board.square / px_per_square
        hp, wp = picture.shape
        x0, y0 = board.squares_origin - px_per_square * m
        x1, y1 = x0 + wp * m, y0 + hp * m
        top = [(x0, y0, 0), (x1, y0, 0), (x1, y1, 0), (x0, y1, 0)]
        verts = top + [(x, y, 0.003) for x, y, _ in top]  # back face behind the board (+z)
        uv = [(0, 0), (1, 0), (1, 1), (0, 1)] * 2
        faces = [
            (0, 2, 1),
            (0, 3, 2),
            (4, 5, 6),
            (4, 6, 7),
            (0, 1, 5),
            (0, 5, 4),
            (1, 2, 6),
            (1, 6, 5),
            (2, 3, 7),
            (2, 7, 6),
            (3, 0, 4),
            (3, 4, 7),
        ]
        size = max(self.width, self.height, 640)
        xml = f"""<mujoco model="calibration_board">
  <compiler texturedir="{self._tmp.name}"/>
  <visual>
    <global offwidth="{size}" offheight="{size}"/>
    <headlight ambient="1 1 1" diffuse="0 0 0" specular="0 0 0"/>
    <rgba haze="0 0 0 0"/>
    <quality shadowsize="0"/>
  </visual>
  <asset>
    <texture name="board" type="2d" file="board.png"/>
    <material name="board" texture="board" specular="0" shininess="0" reflectance="0"/>
    <texture name="sky" type="skybox" builtin="flat" rgb1="{_fmt(background)}"
             rgb2="{_fmt(background)}" width="8" height="8"/>
    <mesh name="board" vertex="{_fmt(verts)}" texcoord="{_fmt(uv)}" face="{_fmt(faces)}"/>
  </asset>
  <worldbody>
    <body name="board" mocap="true">
      <geom type="mesh" mesh="board" material="board" contype="0" conaffinity="0"/>
    </body>
    <body name="camera" mocap="true">
      <camera name="camera" fovy="{self.fovy!r}"/>
    </body>
  </worldbody>
</mujoco>"""
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self._board_mocap = self.model.body("board").mocapid[0]
        self._cam_mocap = self.model.body("camera").mocapid[0]
        self._renderer = None

    @property
    def K(self) -> np.ndarray:
        return camera_matrix(self.width, self.height, self.fovy)

    def camera_info(self) -> dict:
        """Same shape as ``SimWorld.camera_info``."""
        K = self.K
        P = np.zeros((3, 4))
        P[:, :3] = K
        return {
            "width": self.width,
            "height": self.height,
            "K": K,
            "D": np.zeros(5),
            "R": np.eye(3),
            "P": P,
            "distortion_model": "plumb_bob",
            "frame_id": "camera_optical_frame",
        }

    def _set(self, mocap: int, T: np.ndarray, R_fix: Optional[np.ndarray] = None) -> None:
        R = T[:3, :3] if R_fix is None else T[:3, :3] @ R_fix
        q = np.zeros(4)
        self._mj.mju_mat2Quat(q, np.ascontiguousarray(R).ravel())
        self.data.mocap_pos[mocap] = T[:3, 3]
        self.data.mocap_quat[mocap] = q

    def render(
        self, world_T_cam: np.ndarray, world_T_board: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """RGB uint8 (H x W x 3) seen from the optical frame ``world_T_cam``."""
        self._set(self._board_mocap, np.eye(4) if world_T_board is None else world_T_board)
        self._set(self._cam_mocap, world_T_cam, _MJ_FROM_OPTICAL)
        self._mj.mj_forward(self.model, self.data)
        if self._renderer is None:
            self._renderer = self._mj.Renderer(self.model, self.height, self.width)
        self._renderer.update_scene(self.data, camera="camera")
        return self._renderer.render().copy()

    def project(self, cam_T_board: np.ndarray) -> np.ndarray:
        """Pixels of all board corners for a board pose in the camera frame (no distortion)."""
        pts = self.board.object_points() @ cam_T_board[:3, :3].T + cam_T_board[:3, 3]
        uv = pts @ self.K.T
        return uv[:, :2] / uv[:, 2:3]

    def visible(
        self, cam_T_board: np.ndarray, margin_px: float = 12.0, max_tilt_deg: float = 55.0
    ) -> bool:
        """All corners in the image (with a margin), board in front and facing the camera."""
        pts = self.board.object_points() @ cam_T_board[:3, :3].T + cam_T_board[:3, 3]
        if np.any(pts[:, 2] < 0.05):
            return False
        normal = cam_T_board[:3, 2]  # board z, pointing away from a camera that sees its front
        view = cam_T_board[:3, 3] / np.linalg.norm(cam_T_board[:3, 3])
        if np.degrees(np.arccos(np.clip(normal @ view, -1, 1))) > max_tilt_deg:
            return False
        uv = self.project(cam_T_board)
        return bool(
            np.all(uv[:, 0] > margin_px)
            and np.all(uv[:, 0] < self.width - 1 - margin_px)
            and np.all(uv[:, 1] > margin_px)
            and np.all(uv[:, 1] < self.height - 1 - margin_px)
        )

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._tmp.cleanup()

    def __enter__(self) -> "BoardScene":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def board_centre(board: Board) -> np.ndarray:
    pts = board.object_points()
    return 0.5 * (pts.min(axis=0) + pts.max(axis=0))


def intrinsics_views(
    scene: BoardScene, n: int, seed: int = 0, max_tries: int = 20000
) -> List[np.ndarray]:
    """``n`` cam_T_board poses: the board tilted up to ~45 degrees, at different distances and
    spread over the image (corners, edges, centre), all corners visible."""
    rng = np.random.default_rng(seed)
    c = board_centre(scene.board)
    span = float(np.ptp(scene.board.object_points()[:, :2], axis=0).max())
    f = scene.K[0, 0]
    out: List[np.ndarray] = []
    for _ in range(max_tries):
        if len(out) >= n:
            break
        # Distance where the board spans 35-75 % of the image width.
        frac = rng.uniform(0.35, 0.75)
        d = f * span / (frac * scene.width)
        axis = rng.normal(size=3)
        axis[2] *= 0.3
        R = rot_axis_angle(axis, math.radians(rng.uniform(0, 45))) @ rot_axis_angle(
            [0, 0, 1], rng.uniform(-0.5, 0.5)
        )
        # Board centre at a random pixel.
        u = rng.uniform(0.2, 0.8) * scene.width
        v = rng.uniform(0.2, 0.8) * scene.height
        ray = np.linalg.solve(scene.K, [u, v, 1.0])
        t = ray / ray[2] * d - R @ c
        T = make_T(R, t)
        if scene.visible(T):
            out.append(T)
    if len(out) < n:
        raise RuntimeError("could only place %d of %d board views" % (len(out), n))
    return out


@dataclass
class HandEyeScenario:
    setup: str
    X: np.ndarray  # true flange_T_cam (eye_in_hand) or base_T_cam (eye_to_hand)
    joint_positions: List[np.ndarray]
    base_T_cam: List[np.ndarray]
    base_T_board: List[np.ndarray]


def hand_eye_views(
    scene: BoardScene,
    profile,
    setup: str,
    n: int,
    seed: int = 0,
    joint_sigma: float = 0.25,
    distance: float = 0.45,
    max_tries: int = 20000,
) -> HandEyeScenario:
    """Robot poses near the profile's home with the board in view, and the true transform.

    eye_in_hand: camera at ``X = flange_T_cam`` (a few cm off the flange axis, tilted ~10 deg),
    board fixed in front of the home-pose camera. eye_to_hand: board on the flange (printed side
    facing out along flange z), camera fixed in front of the home-pose board.
    """
    rng = np.random.default_rng(seed)
    c = board_centre(scene.board)
    home = np.asarray(profile.home, dtype=np.float64)
    frontal = make_T(np.eye(3), np.array([0.0, 0.0, distance]) - c)  # cam_T_board, head-on
    if setup == "eye_in_hand":
        X = make_T(rot_axis_angle([1.0, 0.5, 0.2], math.radians(10)), [0.05, -0.03, 0.06])
        base_T_board = (
            profile.flange_pose(home)
            @ X
            @ frontal
            @ make_T(rot_axis_angle([0.3, 1.0, 0.0], math.radians(15)), np.zeros(3))
        )
    elif setup == "eye_to_hand":
        flange_T_board = make_T(rot_axis_angle([1, 0, 0], math.pi), [0.0, 0.0, 0.01]) @ make_T(
            np.eye(3), -c
        )
        X = (
            profile.flange_pose(home)
            @ flange_T_board
            @ inv_T(frontal)
            @ make_T(rot_axis_angle([1.0, -0.4, 0.0], math.radians(12)), [0.02, -0.01, 0.0])
        )
    else:
        raise ValueError("setup must be eye_in_hand or eye_to_hand, got %r" % setup)
    qs, cams, boards = [], [], []
    sigma = np.full(profile.dof, joint_sigma)
    for _ in range(max_tries):
        if len(qs) >= n:
            break
        q = home + rng.normal(size=profile.dof) * sigma
        if not profile.within_limits(q, margin=0.05):
            continue
        F = profile.flange_pose(q)
        if setup == "eye_in_hand":
            cam, board = F @ X, base_T_board
        else:
            cam, board = X, F @ flange_T_board
        if scene.visible(inv_T(cam) @ board):
            qs.append(q)
            cams.append(cam)
            boards.append(board)
    if len(qs) < n:
        raise RuntimeError("could only place %d of %d robot poses" % (len(qs), n))
    return HandEyeScenario(
        setup=setup, X=X, joint_positions=qs, base_T_cam=cams, base_T_board=boards
    )
