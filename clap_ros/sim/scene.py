"""Scene builder: table, walls, lights, cameras, task objects and distractor slots around any
embodiment. The table top is the plane z = 0 of the world frame; an arm's base sits on it at the
origin (turned by its mount yaw), and the workspace is in front of it along +x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Tuple

from clap_ros.sim.appearance import CAMERA_JITTER, DISTRACTOR_SLOTS, texture_assets_xml
from clap_ros.sim.embodiments import Embodiment
from clap_ros.sim.mjcf import fmt, lookat_quat

TIMESTEP = 0.002

CUBE_HALF = 0.0225  # 4.5 cm cubes: fit both hands' strokes with margin
CUBE_MASS = 0.05
BOWL_INNER_RADIUS = 0.075
BOWL_WALL_HEIGHT = 0.05
BOWL_BOTTOM = 0.006
GOAL_HALF = 0.05  # goal patch: 10 cm square
TARGET_RADIUS = 0.02

TABLE_X = (-0.35, 1.0)
TABLE_Y = (-0.75, 0.75)
TABLE_THICKNESS = 0.04
FLOOR_Z = -0.76

# Where distractors may stand (outside the robot base, on the table, in view).
DISTRACTOR_AREA = (0.2, 0.8, -0.45, 0.45)


@dataclass(frozen=True)
class CameraSpec:
    name: str
    pos: Tuple[float, float, float]
    target: Tuple[float, float, float]
    fovy: float


SCENE_CAMERA = CameraSpec("scene", pos=(1.3, -0.9, 1.2), target=(0.3, 0.0, 0.15), fovy=55.0)
# Framed on the reachable table area (issue 14): at 96 px the reach ball is ~8 px, not 1-2 as
# from the scene camera 1.8 m away. It sits in front of the robot, a little to the side, so the
# arm rarely hides the objects it works on.
WORKSPACE_CAMERA = CameraSpec("workspace", pos=(0.98, -0.3, 0.6), target=(0.5, 0.0, 0.1), fovy=45.0)
WRIST_FOVY = 75.0


def camera_quat(spec: CameraSpec, jitter_id: int = 0):
    pos = [p + d for p, d in zip(spec.pos, CAMERA_JITTER[jitter_id])]
    return pos, lookat_quat(pos, spec.target)


def _object_xml(role: str, kind: str) -> str:
    """One task object. Free bodies start at the origin; reset places them."""
    # Sliding friction 0.5 (plastic on wood): with the pads' 1.5 the product stays below 1, so a
    # pad pushing a cube cannot wedge it into the table by friction (at 2.0 x 1.0 a push jammed
    # at 40-60 N, a Franka cartesian reflex).
    solid = 'contype="1" conaffinity="1" condim="4" friction="0.5 0.02 0.001"'
    if kind == "cube":
        return (
            '<body name="%s" pos="0 0 %s"><freejoint name="%s_free"/>'
            '<geom name="%s_geom" type="box" size="%s" mass="%s" %s rgba="0.8 0.1 0.1 1"/>'
            "</body>"
            % (role, fmt([CUBE_HALF]), role, role, fmt([CUBE_HALF] * 3), fmt([CUBE_MASS]), solid)
        )
    if kind == "bowl":
        # Static bowl: a disc and a ring of wall segments, placed per episode via body_pos.
        parts = [
            '<body name="%s" pos="0 0 0">' % role,
            '<geom name="%s_geom" type="cylinder" size="%s" pos="0 0 %s" %s rgba="0.1 0.25 0.9 1"/>'
            % (
                role,
                fmt((BOWL_INNER_RADIUS + 0.008, BOWL_BOTTOM / 2)),
                fmt([BOWL_BOTTOM / 2]),
                solid,
            ),
        ]
        n = 16
        half_w = (BOWL_INNER_RADIUS + 0.006) * math.tan(math.pi / n) + 0.002
        for i in range(n):
            a = 2 * math.pi * i / n
            r = BOWL_INNER_RADIUS + 0.004
            parts.append(
                '<geom name="%s_wall%d" type="box" size="%s" pos="%s" euler="0 0 %s" %s '
                'rgba="0.1 0.25 0.9 1"/>'
                % (
                    role,
                    i,
                    fmt((0.004, half_w, BOWL_WALL_HEIGHT / 2)),
                    fmt((r * math.cos(a), r * math.sin(a), BOWL_WALL_HEIGHT / 2)),
                    fmt([a]),
                    solid,
                )
            )
        parts.append("</body>")
        return "\n".join(parts)
    if kind == "goal":
        return (
            '<body name="%s" pos="0 0 0"><geom name="%s_geom" type="box" size="%s" '
            'pos="0 0 0.0008" contype="0" conaffinity="0" rgba="0.1 0.65 0.2 1"/></body>'
            % (role, role, fmt((GOAL_HALF, GOAL_HALF, 0.0008)))
        )
    if kind == "target":
        return (
            '<body name="%s" pos="0 0 0.1"><geom name="%s_geom" type="sphere" size="%s" '
            'contype="0" conaffinity="0" rgba="0.85 0.1 0.1 1"/></body>'
            % (role, role, fmt([TARGET_RADIUS]))
        )
    raise ValueError("unknown object kind '%s'" % kind)


def build_scene_xml(
    embodiment: Embodiment,
    objects: Sequence[Tuple[str, str]],
    image_size: Tuple[int, int],
    wrist_camera: bool = False,
) -> str:
    """MJCF of the whole world. ``objects`` are (role, kind) pairs; ``image_size`` is (h, w)."""
    h, w = image_size
    cam_pos, cam_quat = camera_quat(SCENE_CAMERA, 0)
    ws_pos, ws_quat = camera_quat(WORKSPACE_CAMERA, 0)
    tx = (TABLE_X[0] + TABLE_X[1]) / 2
    hx = (TABLE_X[1] - TABLE_X[0]) / 2
    hy = (TABLE_Y[1] - TABLE_Y[0]) / 2
    legs = []
    for sx in (TABLE_X[0] + 0.06, TABLE_X[1] - 0.06):
        for sy in (TABLE_Y[0] + 0.06, TABLE_Y[1] - 0.06):
            legs.append(
                '<geom type="box" size="0.03 0.03 %s" pos="%s" contype="0" conaffinity="0" '
                'rgba="0.3 0.25 0.2 1"/>'
                % (
                    fmt([(-TABLE_THICKNESS - FLOOR_Z) / 2]),
                    fmt((sx, sy, (FLOOR_Z - TABLE_THICKNESS) / 2)),
                )
            )
    distractors = []
    for i, (gtype, size) in enumerate(DISTRACTOR_SLOTS):
        distractors.append(
            '<geom name="distractor%d" type="%s" size="%s" pos="0 0 -5" '
            'contype="0" conaffinity="0" rgba="0.5 0.5 0.5 1"/>' % (i, gtype, fmt(size))
        )
    objects_xml = "\n".join(_object_xml(role, kind) for role, kind in objects)
    # offsamples=0: no multisampling. Headless rendering here is Mesa llvmpipe (software), where
    # 4x MSAA made a 128 px frame 2.5x slower (15 -> 6 ms) while the model's area downsampling
    # already smooths edges; the sim driver, the direct evaluator and recording share this.
    return """<mujoco model="clap_ros_%(name)s">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="%(dt)s" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="%(ow)d" offheight="%(oh)d"/>
    <quality shadowsize="2048" offsamples="0"/>
    <headlight ambient="0.25 0.25 0.25" diffuse="0.2 0.2 0.2" specular="0 0 0"/>
  </visual>
  <asset>
%(assets)s
  </asset>
  <worldbody>
    <light name="key" pos="0.6 -0.6 2" dir="-0.2 0.3 -1" diffuse="0.7 0.7 0.7" castshadow="true"/>
    <light name="fill" pos="-0.5 0.8 1.8" dir="0.5 -0.4 -1" diffuse="0.3 0.3 0.3"
           castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 %(floor)s" contype="0" conaffinity="0"
          rgba="0.35 0.33 0.32 1"/>
    <geom name="wall_back" type="box" size="0.02 2.5 1.3" pos="-1.1 0 0.4" contype="0"
          conaffinity="0" material="wall_mat0"/>
    <geom name="wall_side" type="box" size="2.5 0.02 1.3" pos="0.4 1.4 0.4" contype="0"
          conaffinity="0" material="wall_mat0"/>
    <geom name="table" type="box" size="%(thx)s %(thy)s %(tht)s" pos="%(tx)s 0 %(tz)s"
          contype="1" conaffinity="1" condim="3" friction="0.5 0.01 0.001" material="table_mat0"/>
%(legs)s
    <camera name="scene" pos="%(cpos)s" quat="%(cquat)s" fovy="%(fovy)s"/>
    <camera name="workspace" pos="%(wpos)s" quat="%(wquat)s" fovy="%(wfovy)s"/>
%(robot)s
%(objects)s
%(distractors)s
  </worldbody>
  <contact>
%(contact)s
  </contact>
  <equality>
%(equality)s
  </equality>
  <actuator>
%(actuators)s
  </actuator>
</mujoco>
""" % {
        "name": embodiment.name,
        "dt": fmt([TIMESTEP]),
        "ow": max(w, 640),
        "oh": max(h, 480),
        "assets": texture_assets_xml(),
        "floor": fmt([FLOOR_Z]),
        "thx": fmt([hx]),
        "thy": fmt([hy]),
        "tht": fmt([TABLE_THICKNESS / 2]),
        "tx": fmt([tx]),
        "tz": fmt([-TABLE_THICKNESS / 2]),
        "legs": "\n".join(legs),
        "cpos": fmt(cam_pos),
        "cquat": fmt(cam_quat),
        "fovy": fmt([SCENE_CAMERA.fovy]),
        "wpos": fmt(ws_pos),
        "wquat": fmt(ws_quat),
        "wfovy": fmt([WORKSPACE_CAMERA.fovy]),
        "robot": embodiment.worldbody_xml(wrist_camera, WRIST_FOVY),
        "objects": objects_xml,
        "distractors": "\n".join(distractors),
        "equality": embodiment.equality_xml(),
        "contact": embodiment.contact_xml(),
        "actuators": embodiment.actuator_xml(),
    }
