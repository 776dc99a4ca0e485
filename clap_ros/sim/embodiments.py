"""Embodiments the scene builder can place in the world: robot arms built from robot profiles, and a
free-floating gripper for the human-video renderer.

An embodiment contributes MJCF (bodies, actuators, equality constraints) and names a TCP site and
two finger joints. Everything else in the scene (table, objects, cameras, lights) is shared, so the
same task can be shown with a different body.

Arm kinematics come from the robot profile's DH table, so the sim and ``profile.tcp_pose(q)`` agree
by construction (and a unit test checks it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from clap_ros.robots import RobotProfile, load_profile
from clap_ros.sim.mjcf import fmt, pose_attrs, rotx, rotz, trans

# Collision bits (MuJoCo collides two geoms when contype(a) & conaffinity(b) or the reverse):
# objects and the table are 1/1 and collide with everything; hand geoms are 2/1 (objects, table,
# arm links, never each other); arm link capsules are 4/7 (objects, table, hand and other links),
# so a policy that sweeps an elbow through the table or an object touches it as the real arm would.
HAND_CONTYPE = 2
HAND_CONAFFINITY = 1
LINK_CONTYPE = 4
LINK_CONAFFINITY = 7

# Collision capsule radius (m) of the base and of each arm link, sized like the real links'
# housings (Franka's FR3 links ~0.06 m near the base to ~0.045 m at the wrist; UR5e's shoulder and
# upper arm ~0.06 m, forearm ~0.045 m, wrists ~0.045 m). A zero-length link (two joint axes that
# meet) is a sphere of that radius at the joint. Keyed by profile name like the hands: collision
# geometry is a fact of the simulated body, not of the joint-level robot profile.
LINK_RADII = {
    "fr3": (0.065, 0.06, 0.06, 0.06, 0.055, 0.055, 0.05, 0.045),
    "panda": (0.065, 0.06, 0.06, 0.06, 0.055, 0.055, 0.05, 0.045),
    "ur5e": (0.075, 0.06, 0.055, 0.045, 0.045, 0.045, 0.04),
}
DEFAULT_LINK_RADIUS = 0.05
# Bodies this close in the chain (base = 0, link i = i, hand = dof + 1) never touch each other:
# their capsules meet at the shared joint by construction, as the real links' housings do.
SELF_COLLISION_SKIP = 2
# Pairs further apart that still overlap in every configuration: on the Franka, link 7 starts
# 0.088 m from the wrist centre, where the forearm (link 4) ends, so their capsules always meet.
EXTRA_EXCLUDES = {"fr3": (("link4", "link7"),), "panda": (("link4", "link7"),)}


@dataclass(frozen=True)
class HandModel:
    """Geometry of a parallel gripper in the hand frame (z out of the flange towards the fingers).

    ``stroke`` is the travel of one finger from closed to fully open (m); fingers close along y.
    """

    name: str
    stroke: float
    pad_half: Tuple[float, float, float]  # (thickness along y, width along x, length along z)
    palm_geoms: Tuple[str, ...]  # MJCF geom elements, hand frame
    finger_rgba: Tuple[float, float, float, float]
    pad_rgba: Tuple[float, float, float, float]
    palm_bottom: float  # z of the palm face the fingers stick out of


FRANKA_HAND = HandModel(
    name="franka_hand",
    stroke=0.04,
    pad_half=(0.006, 0.011, 0.022),
    palm_geoms=(
        '<geom type="cylinder" size="0.032 0.008" pos="0 0 0.008" rgba="0.25 0.25 0.27 1"/>',
        '<geom type="box" size="0.022 0.1 0.025" pos="0 0 0.034" rgba="0.92 0.92 0.93 1"/>',
    ),
    finger_rgba=(0.92, 0.92, 0.93, 1),
    pad_rgba=(0.15, 0.15, 0.16, 1),
    palm_bottom=0.059,
)

ROBOTIQ_2F85 = HandModel(
    name="robotiq_2f85",
    stroke=0.0425,
    pad_half=(0.006, 0.011, 0.02),
    palm_geoms=(
        '<geom type="cylinder" size="0.038 0.025" pos="0 0 0.025" rgba="0.12 0.12 0.13 1"/>',
        '<geom type="box" size="0.02 0.055 0.025" pos="0 0 0.075" rgba="0.15 0.15 0.16 1"/>',
    ),
    finger_rgba=(0.2, 0.2, 0.21, 1),
    pad_rgba=(0.35, 0.35, 0.36, 1),
    palm_bottom=0.1,
)

# The human-video embodiment: a bare "hand" with a skin-coloured palm and thumb/finger pads.
HUMAN_HAND = HandModel(
    name="human_hand",
    stroke=0.045,
    pad_half=(0.008, 0.012, 0.024),
    palm_geoms=(
        '<geom type="capsule" size="0.03 0.02" pos="0 0 0.02" euler="1.5708 0 0" '
        'rgba="0.87 0.68 0.55 1"/>',
        '<geom type="ellipsoid" size="0.045 0.07 0.035" pos="0 0 0.06" rgba="0.87 0.68 0.55 1"/>',
        # Forearm in a sleeve, rising away from the fingers like an arm reaching in.
        '<geom type="capsule" size="0.032" fromto="0.01 0 0.01 0.09 0 -0.2" '
        'rgba="0.87 0.68 0.55 1"/>',
        '<geom type="capsule" size="0.042" fromto="0.07 0 -0.15 0.16 0 -0.4" '
        'rgba="0.3 0.35 0.55 1"/>',
    ),
    finger_rgba=(0.87, 0.68, 0.55, 1),
    pad_rgba=(0.84, 0.62, 0.5, 1),
    palm_bottom=0.09,
)

# Which sim hand goes on which robot. Keyed by profile name; the sim's hand geometry is a fact of
# the simulated world, not of the robot profile (which only knows joint names and units).
HAND_FOR_ROBOT = {"fr3": FRANKA_HAND, "panda": FRANKA_HAND, "ur5e": ROBOTIQ_2F85}


def hand_for_profile(profile: RobotProfile) -> HandModel:
    if profile.name in HAND_FOR_ROBOT:
        return HAND_FOR_ROBOT[profile.name]
    # Unknown profiles: two finger joints in metres look like a Franka hand, one knuckle like a
    # 2F-85.
    return FRANKA_HAND if len(profile.gripper.joint_names) == 2 else ROBOTIQ_2F85


def hand_xml(
    hand: HandModel, tcp_offset: float, prefix: str, wrist_camera: bool, wrist_fovy: float
) -> str:
    """Palm, two sliding fingers and the TCP site, in the frame of the body they are placed in."""
    t, w, length = hand.pad_half
    col = 'contype="%d" conaffinity="%d"' % (HAND_CONTYPE, HAND_CONAFFINITY)
    # High friction, torsional friction (condim 4) and stiff pads: cubes must not slip or spin out.
    # 1.5 times the cubes' and table's 0.5 stays below 1: a pushing pad cannot wedge a cube.
    pad = (
        'type="box" size="%s" %s condim="4" friction="1.5 0.02 0.001" solref="0.004 1" '
        'solimp="0.95 0.99 0.001" priority="1" rgba="%s"'
        % (fmt((w, t, length)), col, fmt(hand.pad_rgba))
    )
    stem_len = max(0.5 * (tcp_offset - 2 * length - hand.palm_bottom), 0.002)
    stem_z = hand.palm_bottom + stem_len
    parts = ['<body name="%shand">' % prefix]
    for g in hand.palm_geoms:
        # Palm geoms collide with objects too, so a finger-first push still stops at the palm.
        parts.append(g.replace("<geom ", "<geom %s " % col, 1))
    parts.append(
        '<site name="%stcp" pos="0 0 %s" size="0.004" rgba="1 0 0 0"/>'
        % (prefix, fmt([tcp_offset]))
    )
    for side, sign in (("left", 1.0), ("right", -1.0)):
        parts.append('<body name="%sfinger_%s">' % (prefix, side))
        parts.append(
            '<joint name="%sfinger_%s_joint" type="slide" axis="0 %g 0" range="0 %s" '
            'damping="8" armature="0.02"/>' % (prefix, side, sign, fmt([hand.stroke]))
        )
        parts.append(
            '<inertial pos="0 0 %s" mass="0.05" diaginertia="2e-5 2e-5 1e-5"/>'
            % fmt([tcp_offset - length])
        )
        parts.append(
            '<geom type="box" size="%s" pos="%s" contype="0" conaffinity="0" rgba="%s"/>'
            % (
                fmt((w * 0.9, t * 0.9, stem_len)),
                fmt((0, sign * (t + 0.004), stem_z)),
                fmt(hand.finger_rgba),
            )
        )
        parts.append(
            '<geom name="%spad_%s" %s pos="%s"/>'
            % (prefix, side, pad, fmt((0, sign * t, tcp_offset - length)))
        )
        parts.append("</body>")
    if wrist_camera:
        # On the palm, offset along x, tilted to look at the space just beyond the fingertips
        # (MuJoCo cameras look along their -z; image up is the hand's -y).
        cam = np.array([0.07, 0.0, 0.03])
        f = np.array([0.0, 0.0, tcp_offset + 0.08]) - cam
        f /= np.linalg.norm(f)
        y = np.array([0.0, -1.0, 0.0])
        x = np.cross(y, -f)
        parts.append(
            '<camera name="wrist" pos="%s" xyaxes="%s" fovy="%s"/>'
            % (fmt(cam), fmt(np.concatenate([x, y])), fmt([wrist_fovy]))
        )
    parts.append("</body>")
    return "\n".join(parts)


def hand_actuator_xml(hand: HandModel, prefix: str, force: float) -> str:
    return (
        '<position name="%sgripper" joint="%sfinger_left_joint" kp="1500" kv="30" '
        'ctrlrange="0 %s" forcerange="%s"/>'
        % (prefix, prefix, fmt([hand.stroke]), fmt((-force, force)))
    )


def hand_equality_xml(prefix: str) -> str:
    # The fingers are mechanically coupled, as in both real grippers.
    return (
        '<joint joint1="%sfinger_left_joint" joint2="%sfinger_right_joint" '
        'solref="0.005 1"/>' % (prefix, prefix)
    )


class Embodiment(ABC):
    """What the scene builder needs from a body that acts in the world."""

    name: str
    hand: HandModel
    prefix: str = ""
    arm_joint_names: List[str] = []

    @property
    def tcp_site(self) -> str:
        return self.prefix + "tcp"

    @property
    def finger_joints(self) -> Tuple[str, str]:
        return (self.prefix + "finger_left_joint", self.prefix + "finger_right_joint")

    @property
    def pad_geoms(self) -> Tuple[str, str]:
        return (self.prefix + "pad_left", self.prefix + "pad_right")

    @abstractmethod
    def worldbody_xml(self, wrist_camera: bool, wrist_fovy: float) -> str:
        """Bodies of this embodiment, placed in the worldbody."""

    @abstractmethod
    def actuator_xml(self) -> str:
        """Actuators; the gripper's is named ``<prefix>gripper``."""

    def equality_xml(self) -> str:
        return hand_equality_xml(self.prefix)

    def contact_xml(self) -> str:
        """``<contact>`` entries (self-collision exclusions); none by default."""
        return ""


def _dh_body_poses(profile: RobotProfile) -> Tuple[List[np.ndarray], np.ndarray]:
    """Parent-from-body transforms of each joint body (joint = rotation about the body's z axis at
    its origin) and the last-body-from-flange transform, for either DH convention."""
    k = profile.kinematics
    n = profile.dof
    poses = []
    if k.convention == "modified":
        # T_i = RotX(alpha) TransX(a) RotZ(theta) TransZ(d); RotZ and TransZ commute, so the joint
        # can sit at the body origin with the body frame equal to the DH frame.
        for i in range(n):
            poses.append(
                rotx(k.alpha[i])
                @ trans(k.a[i], 0, 0)
                @ rotz(k.theta_offset[i])
                @ trans(0, 0, k.d[i])
            )
        last_to_frame = np.eye(4)
    else:
        # T_i = RotZ(theta) TransZ(d) TransX(a) RotX(alpha): the joint acts first, so body i sits
        # at DH frame i-1 and its own fixed part moves on to the next body.
        fixed = [trans(0, 0, k.d[i]) @ trans(k.a[i], 0, 0) @ rotx(k.alpha[i]) for i in range(n)]
        for i in range(n):
            prev = fixed[i - 1] if i > 0 else np.eye(4)
            poses.append(prev @ rotz(k.theta_offset[i]))
        last_to_frame = fixed[-1]
    flange = last_to_frame @ trans(0, 0, k.flange_d) @ rotz(k.flange_yaw)
    return poses, flange


ARM_COLORS = {
    "franka_hand": ("0.93 0.93 0.94 1", "0.2 0.2 0.22 1"),
    "robotiq_2f85": ("0.55 0.7 0.85 1", "0.25 0.27 0.3 1"),
}


class ArmEmbodiment(Embodiment):
    """A serial arm generated from a robot profile's DH table, with its sim gripper."""

    def __init__(self, profile: RobotProfile | str, mount_yaw: float | None = None):
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.hand = hand_for_profile(self.profile)
        self.name = self.profile.name
        self.prefix = ""
        self.arm_joint_names = list(self.profile.joint_names)
        if mount_yaw is None:
            # Turn the base so the home TCP lies in front of it (+x): every robot then faces the
            # same shared workspace, table and camera.
            p = self.profile.tcp_pose(self.profile.home)[:3, 3]
            mount_yaw = -float(np.arctan2(p[1], p[0]))
        self.mount_yaw = mount_yaw
        self.base_pose = rotz(mount_yaw)

    def worldbody_xml(self, wrist_camera: bool, wrist_fovy: float) -> str:
        prof = self.profile
        lim = prof.limits
        poses, flange = _dh_body_poses(prof)
        light, dark = ARM_COLORS.get(self.hand.name, ARM_COLORS["franka_hand"])
        vis = 'contype="0" conaffinity="0" group="1"'
        radii = self.link_radii
        out = [
            '<body name="base" %s>' % pose_attrs(self.base_pose),
            '<geom type="cylinder" size="0.09 0.02" pos="0 0 0.02" %s rgba="%s"/>' % (vis, dark),
        ]
        # Link i's visual runs from its own origin to the next body's origin; its collision
        # capsule covers the same segment (group 3: hidden in renders).
        offsets = [p[:3, 3] for p in poses] + [flange[:3, 3]]
        out.append(_link_geom(np.zeros(3), offsets[0], light, vis))
        elbows = _dh_elbows(prof)
        out.append(_collision_geom("base_col", [np.zeros(3), offsets[0]], radii[0]))
        n = prof.dof
        for i in range(n):
            # Heavier proximal links; exact values matter little with gravity compensation on.
            mass = max(3.0 - 0.4 * i, 0.6)
            out.append('<body name="link%d" %s gravcomp="1">' % (i + 1, pose_attrs(poses[i])))
            out.append(
                '<inertial pos="0 0 0" mass="%s" diaginertia="%s"/>'
                % (fmt([mass]), fmt([0.02 * mass] * 3))
            )
            out.append(
                '<joint name="%s" type="hinge" axis="0 0 1" range="%s" damping="1.0" '
                'armature="0.1"/>' % (prof.joint_names[i], fmt((lim.lower[i], lim.upper[i])))
            )
            out.append(
                '<geom type="cylinder" size="0.055 0.06" %s rgba="%s"/>'
                % (vis, dark if i % 2 else light)
            )
            out.append(_link_geom(np.zeros(3), offsets[i + 1], light, vis))
            path = [np.zeros(3)] + ([elbows[i]] if elbows[i] is not None else [])
            out.append(
                _collision_geom("link%d_col" % (i + 1), path + [offsets[i + 1]], radii[i + 1])
            )
        out.append('<body name="flange" %s gravcomp="1">' % pose_attrs(flange))
        out.append('<inertial pos="0 0 0.05" mass="0.7" diaginertia="0.002 0.002 0.002"/>')
        out.append(
            hand_xml(
                self.hand, prof.kinematics.tcp_offset, self.prefix, wrist_camera, wrist_fovy
            ).replace('<body name="hand">', '<body name="hand" gravcomp="1">', 1)
        )
        out.append("</body>")
        out.extend("</body>" for _ in range(n + 1))
        return "\n".join(out)

    @property
    def link_radii(self) -> Tuple[float, ...]:
        r = LINK_RADII.get(self.profile.name)
        if r is None or len(r) != self.profile.dof + 1:
            return (DEFAULT_LINK_RADIUS,) * (self.profile.dof + 1)
        return r

    @property
    def collision_bodies(self) -> List[str]:
        """Bodies with collision geometry, in chain order (base, links, hand)."""
        return ["base"] + ["link%d" % (i + 1) for i in range(self.profile.dof)] + ["hand"]

    def contact_xml(self) -> str:
        """Self-collision exclusions: chain neighbours up to SELF_COLLISION_SKIP apart (MuJoCo's
        parent-child filter does not cover the base, which is welded to the world), and link 1
        against the world (table): it turns about the vertical base axis on the table and cannot
        reach it, while its capsule rests on it."""
        bodies = self.collision_bodies
        pairs = ['<exclude body1="world" body2="link1"/>']
        for i in range(len(bodies)):
            for j in range(i + 1, min(i + SELF_COLLISION_SKIP + 1, len(bodies))):
                pairs.append('<exclude body1="%s" body2="%s"/>' % (bodies[i], bodies[j]))
        for a, b in EXTRA_EXCLUDES.get(self.profile.name, ()):
            pairs.append('<exclude body1="%s" body2="%s"/>' % (a, b))
        # The fingers are children of the hand: exclude them from the links the hand is.
        for side in ("left", "right"):
            for b in bodies[-1 - SELF_COLLISION_SKIP : -1]:
                pairs.append('<exclude body1="%s" body2="%sfinger_%s"/>' % (b, self.prefix, side))
        return "\n".join(pairs)

    def actuator_xml(self) -> str:
        lim = self.profile.limits
        out = []
        for i, name in enumerate(self.profile.joint_names):
            # A PD servo split in two actuators: a position spring and a velocity damper whose
            # target is the commanded joint velocity, so a moving target is tracked without lag.
            kp = 2500.0 if i < 4 else 800.0
            kv = 2.0 * np.sqrt(kp * (0.6 if i < 4 else 0.15))
            out.append(
                '<position name="%s_pos" joint="%s" kp="%s" ctrlrange="%s"/>'
                % (name, name, fmt([kp]), fmt((lim.lower[i], lim.upper[i])))
            )
            out.append(
                '<velocity name="%s_vel" joint="%s" kv="%s" ctrlrange="%s"/>'
                % (name, name, fmt([kv]), fmt((-lim.velocity[i], lim.velocity[i])))
            )
        force = 0.5 * self.profile.gripper.max_effort
        out.append(hand_actuator_xml(self.hand, self.prefix, force))
        return "\n".join(out)


def _dh_elbows(profile: RobotProfile) -> List[np.ndarray | None]:
    """The corner of each link's L shape in its own body frame (None: straight), so a link with
    both an offset along x (a) and along z (d) is two capsules along its real outline instead of
    one diagonal that cuts through the space beside it (FR3's elbow, UR's shoulder and wrists)."""
    k = profile.kinematics
    out: List[np.ndarray | None] = []
    for i in range(profile.dof):
        if k.convention == "modified":
            # body i+1 = RotX(alpha) TransX(a) RotZ TransZ(d) in body i: the corner is after a.
            if i + 1 < profile.dof and abs(k.a[i + 1]) > 1e-4 and abs(k.d[i + 1]) > 1e-4:
                out.append(np.array([k.a[i + 1], 0.0, 0.0]))
            else:
                out.append(None)
        else:
            # body i+1 = TransZ(d) TransX(a) RotX(alpha) in body i (turned by theta_offset): the
            # corner is after d.
            if abs(k.a[i]) > 1e-4 and abs(k.d[i]) > 1e-4:
                out.append((rotz(k.theta_offset[i]) @ np.array([0.0, 0.0, k.d[i], 1.0]))[:3])
            else:
                out.append(None)
    return out


def _collision_geom(name: str, path: Sequence[np.ndarray], radius: float) -> str:
    """A link's collision capsules along ``path`` (a sphere when its points meet)."""
    col = 'contype="%d" conaffinity="%d" condim="3" group="3" rgba="1 0.5 0 0.3"' % (
        LINK_CONTYPE,
        LINK_CONAFFINITY,
    )
    pts = [np.asarray(p, dtype=np.float64) for p in path]
    segs = [(a, b) for a, b in zip(pts[:-1], pts[1:]) if np.linalg.norm(b - a) >= 1e-4]
    if not segs:
        return '<geom name="%s" type="sphere" size="%s" pos="%s" %s/>' % (
            name,
            fmt([radius]),
            fmt(pts[0]),
            col,
        )
    return "\n".join(
        '<geom name="%s" type="capsule" size="%s" fromto="%s" %s/>'
        % (name if k == 0 else "%s%d" % (name, k), fmt([radius]), fmt(np.concatenate([a, b])), col)
        for k, (a, b) in enumerate(segs)
    )


def _link_geom(a: np.ndarray, b: np.ndarray, rgba: str, vis: str) -> str:
    if np.linalg.norm(b - a) < 1e-4:
        return ""
    return '<geom type="capsule" size="0.045" fromto="%s" %s rgba="%s"/>' % (
        fmt(np.concatenate([a, b])),
        vis,
        rgba,
    )


class FloatingHandEmbodiment(Embodiment):
    """A gripper with no arm, moved by a mocap body: the human-video embodiment."""

    def __init__(self, hand: HandModel = HUMAN_HAND, tcp_offset: float = 0.13):
        self.hand = hand
        self.name = hand.name
        self.prefix = "fh_"
        self.tcp_offset = tcp_offset
        self.arm_joint_names = []

    def worldbody_xml(self, wrist_camera: bool, wrist_fovy: float) -> str:
        inner = hand_xml(self.hand, self.tcp_offset, self.prefix, wrist_camera, wrist_fovy)
        # A free, gravity-compensated hand pulled by a weld to a mocap target: contacts then see
        # the hand's real velocity, so friction can hold a grasped cube (a bare mocap body moves
        # by teleporting and its fingers would drop the cube).
        inner = inner.replace(
            '<body name="%shand">' % self.prefix,
            '<body name="%shand" pos="0.3 0 0.5" quat="0 1 0 0" gravcomp="1">'
            '<freejoint name="%shand_free"/>' % (self.prefix, self.prefix),
            1,
        )
        for side in ("left", "right"):
            inner = inner.replace(
                '<body name="%sfinger_%s">' % (self.prefix, side),
                '<body name="%sfinger_%s" gravcomp="1">' % (self.prefix, side),
                1,
            )
        target = '<body name="%starget" mocap="true" pos="0.3 0 0.5" quat="0 1 0 0"/>' % self.prefix
        return target + "\n" + inner

    def equality_xml(self) -> str:
        weld = '<weld body1="%starget" body2="%shand" relpose="0 0 0 1 0 0 0" solref="0.02 1"/>' % (
            self.prefix,
            self.prefix,
        )
        return hand_equality_xml(self.prefix) + "\n" + weld

    def actuator_xml(self) -> str:
        return hand_actuator_xml(self.hand, self.prefix, 30.0)
