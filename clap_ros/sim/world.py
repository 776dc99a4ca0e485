"""``SimWorld``: one MuJoCo world = embodiment + scene + task, reset per seed.

The model is compiled once per (embodiment, task, image size, wrist camera). ``reset(seed)`` places
objects from a layout stream and applies a look from an appearance stream; the two streams are
independent, so ``randomize`` and ``appearance_seed`` never change the physics.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np

from clap_ros.robots import RobotProfile
from clap_ros.sim import appearance as app
from clap_ros.sim.embodiments import ArmEmbodiment, Embodiment, FloatingHandEmbodiment
from clap_ros.sim.scene import (
    CUBE_HALF,
    DISTRACTOR_AREA,
    SCENE_CAMERA,
    WORKSPACE_CAMERA,
    build_scene_xml,
    camera_quat,
)
from clap_ros.sim.tasks import Layout, Task, get_task

# ROS optical frame (z forward, x right, y down) from a MuJoCo camera frame (looks along -z, y up).
_OPTICAL_FROM_MJ = np.diag([1.0, -1.0, -1.0])

# Rest height of each distractor shape on the table (half its height when standing upright).
_REST_Z = {
    "sphere": lambda s: s[0],
    "cylinder": lambda s: s[1],
    "ellipsoid": lambda s: s[2],
    "capsule": lambda s: s[0] + s[1],
    "box": lambda s: s[2],
}


def _layout_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 0x1A70])


class SimWorld:
    """A robot (or floating hand), a table scene and one task. See docs/INTERFACES.md."""

    def __init__(
        self,
        robot: str = "fr3",
        task: str = "pick_place",
        seed: int = 0,
        randomize: bool = True,
        image_size: Tuple[int, int] = (128, 128),
        wrist_camera: bool = False,
        appearance_seed: Optional[int] = None,
        embodiment: Optional[Embodiment] = None,
        shadows: bool = False,
    ):
        import mujoco

        self._mj = mujoco
        self.task: Task = get_task(task)
        self.task_name = self.task.name
        self.embodiment = embodiment if embodiment is not None else ArmEmbodiment(robot)
        self.profile: Optional[RobotProfile] = getattr(self.embodiment, "profile", None)
        self.randomize = bool(randomize)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if min(self.image_size) <= 0:
            raise ValueError("image_size must be positive (height, width), got %s" % (image_size,))
        self.wrist_camera = bool(wrist_camera)
        # Shadow maps cost about 5x in software (EGL on CPU) rendering; pictures turn them on.
        self.shadows = bool(shadows)
        xml = build_scene_xml(
            self.embodiment, self.task.objects, self.image_size, self.wrist_camera
        )
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self._renderer = None
        self._index()
        self.seed = int(seed)
        self.appearance_seed = self.seed if appearance_seed is None else int(appearance_seed)
        self.reset(seed=self.seed, appearance_seed=appearance_seed)

    # --- construction helpers --------------------------------------------------------------
    def _index(self) -> None:
        m = self.model
        emb = self.embodiment
        self._arm_qadr = np.array([m.joint(n).qposadr[0] for n in emb.arm_joint_names], dtype=int)
        self._arm_dadr = np.array([m.joint(n).dofadr[0] for n in emb.arm_joint_names], dtype=int)
        self._arm_pos_act = np.array(
            [m.actuator(n + "_pos").id for n in emb.arm_joint_names], dtype=int
        )
        self._arm_vel_act = np.array(
            [m.actuator(n + "_vel").id for n in emb.arm_joint_names], dtype=int
        )
        self._grip_act = m.actuator(emb.prefix + "gripper").id
        self._finger_qadr = np.array([m.joint(n).qposadr[0] for n in emb.finger_joints], dtype=int)
        self._tcp = m.site(emb.tcp_site).id
        hand_bodies = {m.body(emb.prefix + n).id for n in ("hand", "finger_left", "finger_right")}
        self._hand_geoms = np.array([g for g in range(m.ngeom) if m.geom_bodyid[g] in hand_bodies])
        self._objects: Dict[str, dict] = {}
        for role, kind in self.task.objects:
            bid = m.body(role).id
            info = {
                "kind": kind,
                "body": bid,
                "geoms": np.array([g for g in range(m.ngeom) if m.geom_bodyid[g] == bid]),
            }
            if kind == "cube":
                info["qadr"] = m.joint(role + "_free").qposadr[0]
            self._objects[role] = info
        self._table_geom = m.geom("table").id
        self._wall_geoms = [m.geom("wall_back").id, m.geom("wall_side").id]
        self._table_mats = [
            m.material("table_mat%d" % i).id for i in range(len(app.ALL_TABLE_TEXTURES))
        ]
        self._wall_mats = [
            m.material("wall_mat%d" % i).id for i in range(len(app.ALL_WALL_TEXTURES))
        ]
        self._lights = (m.light("key").id, m.light("fill").id)
        self._scene_cam = m.camera("scene").id
        self._workspace_cam = m.camera("workspace").id
        self._distractor_geoms = [
            m.geom("distractor%d" % i).id for i in range(len(app.DISTRACTOR_SLOTS))
        ]
        self._mocap = -1
        if isinstance(emb, FloatingHandEmbodiment):
            self._mocap = m.body_mocapid[m.body(emb.prefix + "target").id]
            self._hand_qadr = m.joint(emb.prefix + "hand_free").qposadr[0]

    # --- reset -----------------------------------------------------------------------------
    @property
    def base_pose(self) -> np.ndarray:
        """World-from-robot-base transform (identity for the floating hand)."""
        return getattr(self.embodiment, "base_pose", np.eye(4)).copy()

    def home_tcp_pose(self) -> np.ndarray:
        if self.profile is not None:
            return self.base_pose @ self.profile.tcp_pose(self.profile.home)
        # Floating hand: starts above the workspace, fingers down.
        T = np.eye(4)
        T[:3, :3] = np.diag([1.0, -1.0, -1.0])
        T[:3, 3] = (0.35, 0.0, 0.42)
        return T

    def home_yaw(self) -> float:
        R = self.home_tcp_pose()[:3, :3]
        return float(math.atan2(R[1, 0], R[0, 0]))

    def reset(self, seed: Optional[int] = None, appearance_seed: Optional[int] = None) -> None:
        """New layout for ``seed`` and a new look for ``appearance_seed`` (default: the seed)."""
        mj, m, d = self._mj, self.model, self.data
        if seed is not None:
            self.seed = int(seed)
        self.appearance_seed = self.seed if appearance_seed is None else int(appearance_seed)
        self.layout: Layout = self.task.sample_layout(
            _layout_rng(self.seed), self.home_tcp_pose()[:3, 3]
        )
        mj.mj_resetData(m, d)
        if self.profile is not None:
            d.qpos[self._arm_qadr] = self.profile.home
            d.ctrl[self._arm_pos_act] = self.profile.home
            d.ctrl[self._arm_vel_act] = 0.0
        stroke = self.embodiment.hand.stroke
        d.qpos[self._finger_qadr] = stroke
        d.ctrl[self._grip_act] = stroke
        if self._mocap >= 0:
            self.set_tcp_target(self.home_tcp_pose()[:3, 3], self.home_yaw())
            a = self._hand_qadr
            d.qpos[a : a + 3] = d.mocap_pos[self._mocap]
            d.qpos[a + 3 : a + 7] = d.mocap_quat[self._mocap]
        for role, info in self._objects.items():
            self._place(role, info)
        if self.randomize:
            keep = [tuple(v[:2]) for v in self.layout.poses.values()]
            keep += [tuple(v[:2]) for v in self.layout.points.values()]
            keep.append((0.0, 0.0))  # robot base
            self._appearance = app.sample_appearance(
                self.appearance_seed, self.task.color_roles, keep, DISTRACTOR_AREA
            )
        else:
            self._appearance = app.default_appearance(self.task.color_roles)
        self._apply_appearance(self._appearance)
        mj.mj_forward(m, d)

    def _place(self, role: str, info: dict) -> None:
        m, d = self.model, self.data
        if role in self.layout.points:
            m.body_pos[info["body"]] = self.layout.points[role]
            return
        x, y, yaw = self.layout.poses[role]
        quat = np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
        if info["kind"] == "cube":
            a = info["qadr"]
            d.qpos[a : a + 3] = (x, y, CUBE_HALF)
            d.qpos[a + 3 : a + 7] = quat
        else:
            m.body_pos[info["body"]] = (x, y, 0.0)
            m.body_quat[info["body"]] = quat

    def _apply_appearance(self, a: app.Appearance) -> None:
        m = self.model
        m.geom_matid[self._table_geom] = self._table_mats[a.table_texture]
        for g in self._wall_geoms:
            m.geom_matid[g] = self._wall_mats[a.wall_texture]
        for role, name in a.object_colors.items():
            m.geom_rgba[self._objects[role]["geoms"], :3] = app.PALETTE[name]
        preset = app.LIGHTS[a.light]
        for lid, key in zip(self._lights, ("key", "fill")):
            pos, direction, diffuse = preset[key]
            dvec = np.asarray(direction, dtype=np.float64)
            m.light_pos[lid] = pos
            m.light_dir[lid] = dvec / np.linalg.norm(dvec)
            m.light_diffuse[lid] = diffuse
            m.light_castshadow[lid] = self.shadows and key == "key"
        m.vis.headlight.ambient[:] = preset["ambient"]
        for slot, g in enumerate(self._distractor_geoms):
            m.geom_pos[g] = (0.0, 0.0, -5.0)
        for slot, color, (x, y) in zip(a.distractors, a.distractor_colors, a.distractor_xy):
            g = self._distractor_geoms[slot]
            gtype, size = app.DISTRACTOR_SLOTS[slot]
            m.geom_pos[g] = (x, y, _REST_Z[gtype](size))
            m.geom_rgba[g, :3] = app.PALETTE[color]
        pos, quat = camera_quat(SCENE_CAMERA, a.camera_jitter)
        m.cam_pos[self._scene_cam] = pos
        m.cam_quat[self._scene_cam] = quat
        pos, quat = camera_quat(WORKSPACE_CAMERA, a.camera_jitter)
        m.cam_pos[self._workspace_cam] = pos
        m.cam_quat[self._workspace_cam] = quat

    # --- task-facing state ------------------------------------------------------------------
    @property
    def appearance(self) -> dict:
        return self._appearance.as_dict()

    @property
    def object_colors(self) -> Dict[str, str]:
        return dict(self._appearance.object_colors)

    @property
    def instruction(self) -> str:
        return self.task.instruction(self._appearance.object_colors)

    def success(self) -> bool:
        return self.task.success(self)

    def goal_distance(self) -> float:
        return self.task.goal_distance(self)

    def object_position(self, role: str) -> np.ndarray:
        return self.data.xpos[self._objects[role]["body"]].copy()

    def object_pose(self, role: str) -> np.ndarray:
        T = np.eye(4)
        b = self._objects[role]["body"]
        T[:3, :3] = self.data.xmat[b].reshape(3, 3)
        T[:3, 3] = self.data.xpos[b]
        return T

    def tcp_position(self) -> np.ndarray:
        return self.data.site_xpos[self._tcp].copy()

    def tcp_pose(self) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = self.data.site_xmat[self._tcp].reshape(3, 3)
        T[:3, 3] = self.data.site_xpos[self._tcp]
        return T

    def hand_touches(self, role: str) -> bool:
        """Whether any gripper geom is in contact with the object ``role``."""
        d = self.data
        n = d.ncon
        if n == 0:
            return False
        g1, g2 = d.contact.geom1[:n], d.contact.geom2[:n]
        obj = self._objects[role]["geoms"]
        hand = self._hand_geoms
        return bool(
            np.any((np.isin(g1, hand) & np.isin(g2, obj)) | (np.isin(g2, hand) & np.isin(g1, obj)))
        )

    # --- control ----------------------------------------------------------------------------
    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        return float(self.data.time)

    def set_arm_target(self, q, qd=None) -> None:
        """Joint position targets (profile order), clipped to the joint limits.

        ``qd`` (optional extension) is the commanded joint velocity: the servo damps towards it
        instead of towards zero, so moving targets are tracked without lag.
        """
        if self.profile is None:
            raise RuntimeError("this world has no arm (embodiment %s)" % self.embodiment.name)
        q = np.asarray(q, dtype=np.float64)
        if q.shape != (self.profile.dof,) or not np.all(np.isfinite(q)):
            raise ValueError("arm target must be %d finite values, got %r" % (self.profile.dof, q))
        lim = self.profile.limits
        self.data.ctrl[self._arm_pos_act] = np.clip(q, lim.lower, lim.upper)
        if qd is None:
            self.data.ctrl[self._arm_vel_act] = 0.0
        else:
            qd = np.asarray(qd, dtype=np.float64)
            if qd.shape != q.shape or not np.all(np.isfinite(qd)):
                raise ValueError("arm velocity must be %d finite values" % self.profile.dof)
            self.data.ctrl[self._arm_vel_act] = np.clip(qd, -lim.velocity, lim.velocity)

    def set_tcp_target(self, pos, yaw: float) -> None:
        """Floating hand only: put the TCP at ``pos`` pointing down with gripper ``yaw``."""
        if self._mocap < 0:
            raise RuntimeError("set_tcp_target needs the floating-hand embodiment")
        c, s = math.cos(yaw), math.sin(yaw)
        R = np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])
        hand_pos = np.asarray(pos, dtype=np.float64) - R[:, 2] * self.embodiment.tcp_offset
        q = np.zeros(4)
        self._mj.mju_mat2Quat(q, R.reshape(9))
        self.data.mocap_pos[self._mocap] = hand_pos
        self.data.mocap_quat[self._mocap] = q

    def set_gripper(self, opening: float) -> None:
        """Normalised opening: 0 closed .. 1 fully open."""
        o = float(opening)
        if not math.isfinite(o):
            raise ValueError("gripper opening must be finite, got %r" % opening)
        self.data.ctrl[self._grip_act] = min(max(o, 0.0), 1.0) * self.embodiment.hand.stroke

    def step(self, n: int = 1) -> None:
        self._mj.mj_step(self.model, self.data, nstep=int(n))

    def set_shadows(self, on: bool) -> None:
        """Shadow maps on or off from now on (kept over resets); the key light casts them."""
        self.shadows = bool(on)
        for lid, key in zip(self._lights, ("key", "fill")):
            self.model.light_castshadow[lid] = self.shadows and key == "key"

    def set_arm_pose(self, q) -> None:
        """Kinematic: put the arm at ``q`` (profile order) at rest, targets there, and update
        the derived quantities (poses, cameras) without stepping time. For rendering states
        that were not reached by simulation (training data)."""
        q = np.asarray(q, dtype=np.float64)
        if self.profile is None or q.shape != (self.profile.dof,):
            raise ValueError("set_arm_pose needs %s joint values" % getattr(self.profile, "dof", 0))
        self.data.qpos[self._arm_qadr] = q
        self.data.qvel[self._arm_dadr] = 0.0
        self.set_arm_target(q)
        self._mj.mj_forward(self.model, self.data)

    def arm_qpos(self) -> np.ndarray:
        return self.data.qpos[self._arm_qadr].copy()

    def arm_qvel(self) -> np.ndarray:
        return self.data.qvel[self._arm_dadr].copy()

    def gripper_opening(self) -> float:
        """Measured opening, 0 closed .. 1 fully open."""
        return float(
            np.clip(self.data.qpos[self._finger_qadr[0]] / self.embodiment.hand.stroke, 0, 1)
        )

    def gripper_qpos(self) -> np.ndarray:
        """Values for ``profile.gripper.joint_names`` in that gripper's units (m or rad)."""
        if self.profile is None:
            return np.array([self.gripper_opening()])
        pos = self.profile.gripper.position_from_command(self.gripper_opening())
        return np.full(len(self.profile.gripper.joint_names), pos)

    # --- cameras ------------------------------------------------------------------------------
    def _camera_id(self, camera: str) -> int:
        if camera == "wrist" and not self.wrist_camera:
            raise ValueError("this world has no wrist camera (create it with wrist_camera=True)")
        cid = self._mj.mj_name2id(self.model, self._mj.mjtObj.mjOBJ_CAMERA, camera)
        if cid < 0:
            raise ValueError(
                "unknown camera '%s' (have: scene, workspace%s)"
                % (camera, ", wrist" if self.wrist_camera else "")
            )
        return cid

    def render(self, camera: str = "scene") -> np.ndarray:
        """RGB image (uint8, H x W x 3) from a named camera."""
        cid = self._camera_id(camera)
        if self._renderer is None:
            self._renderer = self._mj.Renderer(self.model, self.image_size[0], self.image_size[1])
        self._renderer.update_scene(self.data, camera=cid)
        return self._renderer.render()

    def camera_info(self, camera: str = "scene") -> dict:
        """Pinhole intrinsics matching the MuJoCo camera (plumb_bob, no distortion).

        MuJoCo's fovy is the full vertical field of view over the image height, pixels are square,
        and the optical axis passes through the image centre, which in pixel-centre coordinates
        (ROS/OpenCV) is ((w - 1) / 2, (h - 1) / 2).
        """
        cid = self._camera_id(camera)
        h, w = self.image_size
        f = h / (2.0 * math.tan(math.radians(float(self.model.cam_fovy[cid])) / 2.0))
        K = np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
        P = np.zeros((3, 4))
        P[:, :3] = K
        return {
            "width": w,
            "height": h,
            "K": K,
            "D": np.zeros(5),
            "R": np.eye(3),
            "P": P,
            "distortion_model": "plumb_bob",
            "frame_id": "%s_camera_optical_frame" % camera,
        }

    def camera_pose(self, camera: str = "scene") -> np.ndarray:
        """World-from-optical-frame transform (z forward, x right, y down) of a camera, now."""
        cid = self._camera_id(camera)
        T = np.eye(4)
        T[:3, :3] = self.data.cam_xmat[cid].reshape(3, 3) @ _OPTICAL_FROM_MJ
        T[:3, 3] = self.data.cam_xpos[cid]
        return T

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> "SimWorld":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "SimWorld(robot=%s, task=%s, seed=%d, randomize=%s)" % (
            self.embodiment.name,
            self.task_name,
            self.seed,
            self.randomize,
        )
