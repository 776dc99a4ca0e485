"""Visual randomisation: named colour palette, table/wall materials, lighting presets, distractors,
camera jitter. Everything here changes only how the world looks, never how it moves: the model is
compiled once with every material, light and distractor slot, and a reset only edits rendering
fields (material ids, colours, light and camera poses, visual-only geom poses).

Factors are discrete (ids into the tables below) so appearance-leakage probes can classify them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import numpy as np

# Object colours named in instructions. The rendered colour is exactly this rgb, so "red" in an
# instruction is red in the picture.
PALETTE: Dict[str, Tuple[float, float, float]] = {
    "red": (0.85, 0.1, 0.1),
    "green": (0.1, 0.65, 0.2),
    "blue": (0.1, 0.25, 0.9),
    "yellow": (0.95, 0.85, 0.1),
    "orange": (1.0, 0.5, 0.05),
    "purple": (0.55, 0.15, 0.75),
    "cyan": (0.1, 0.8, 0.85),
    "pink": (0.95, 0.45, 0.7),
}

# Table materials: (builtin texture, rgb1, rgb2, mark, texrepeat). Muted woods/greys/cloths so the
# palette colours of task objects stay distinguishable on every table.
TABLE_TEXTURES: List[Tuple[str, Tuple[float, ...], Tuple[float, ...], str, Tuple[float, float]]] = [
    ("flat", (0.62, 0.5, 0.36), (0.55, 0.43, 0.3), "random", (1, 1)),
    ("checker", (0.55, 0.55, 0.55), (0.45, 0.45, 0.45), "none", (8, 8)),
    ("gradient", (0.7, 0.62, 0.5), (0.45, 0.37, 0.28), "none", (1, 1)),
    ("flat", (0.35, 0.36, 0.38), (0.3, 0.3, 0.32), "random", (1, 1)),
    ("checker", (0.72, 0.68, 0.6), (0.6, 0.55, 0.48), "none", (4, 4)),
    ("flat", (0.8, 0.78, 0.74), (0.7, 0.68, 0.64), "random", (1, 1)),
]

WALL_TEXTURES: List[Tuple[str, Tuple[float, ...], Tuple[float, ...], str, Tuple[float, float]]] = [
    ("flat", (0.82, 0.84, 0.86), (0.8, 0.8, 0.8), "none", (1, 1)),
    ("gradient", (0.6, 0.7, 0.8), (0.3, 0.35, 0.45), "none", (1, 1)),
    ("checker", (0.75, 0.72, 0.65), (0.65, 0.62, 0.55), "none", (6, 6)),
    ("flat", (0.5, 0.55, 0.5), (0.45, 0.5, 0.45), "random", (1, 1)),
    ("gradient", (0.85, 0.75, 0.65), (0.55, 0.45, 0.4), "none", (1, 1)),
]

# Lighting presets for the two scene lights: (pos, dir, diffuse) each, plus headlight ambient.
LIGHTS: List[dict] = [
    {
        "key": ((0.6, -0.6, 2.0), (-0.2, 0.3, -1.0), (0.7, 0.7, 0.7)),
        "fill": ((-0.5, 0.8, 1.8), (0.5, -0.4, -1.0), (0.3, 0.3, 0.3)),
        "ambient": 0.25,
    },
    {
        "key": ((1.2, 0.4, 1.6), (-0.6, -0.2, -1.0), (0.85, 0.78, 0.65)),
        "fill": ((-0.3, -0.9, 1.5), (0.3, 0.5, -1.0), (0.2, 0.2, 0.25)),
        "ambient": 0.2,
    },
    {
        "key": ((0.2, 0.9, 2.2), (0.1, -0.4, -1.0), (0.6, 0.65, 0.75)),
        "fill": ((1.0, -0.8, 1.2), (-0.5, 0.5, -0.6), (0.35, 0.3, 0.25)),
        "ambient": 0.3,
    },
    {
        "key": ((0.5, 0.0, 2.5), (0.0, 0.0, -1.0), (0.95, 0.95, 0.95)),
        "fill": ((-1.0, 0.0, 1.0), (1.0, 0.0, -0.5), (0.15, 0.15, 0.15)),
        "ambient": 0.15,
    },
    {
        "key": ((1.5, -1.0, 1.2), (-0.7, 0.5, -0.6), (0.8, 0.7, 0.55)),
        "fill": ((0.0, 1.0, 2.0), (0.0, -0.4, -1.0), (0.3, 0.35, 0.4)),
        "ambient": 0.3,
    },
]

# Visual-only distractor slots: (MJCF geom type, size). Placed off the table when unused.
DISTRACTOR_SLOTS: List[Tuple[str, Tuple[float, ...]]] = [
    ("sphere", (0.03,)),
    ("cylinder", (0.025, 0.04)),
    ("ellipsoid", (0.04, 0.025, 0.02)),
    ("capsule", (0.018, 0.03)),
    ("box", (0.02, 0.05, 0.015)),
    ("cylinder", (0.04, 0.01)),
]
MAX_DISTRACTORS = 4

# Test-time distribution shift (issue 6, experiment 3): appearance seeds from SHIFTED_SEEDS_FROM up
# draw tables and walls only from the SHIFTED_* textures below, which no lower seed ever uses, and
# MAX_DISTRACTORS up to every distractor slot at once. A seed range rather than a flag, so every
# entry point that takes a seed (sim record, human-videos, sim_driver, eval-sim) can render the
# shifted look without a new parameter; lower seeds sample exactly as before.
SHIFTED_SEEDS_FROM = 1_000_000_000
SHIFTED_TABLE_TEXTURES: List[
    Tuple[str, Tuple[float, ...], Tuple[float, ...], str, Tuple[float, float]]
] = [
    ("checker", (0.3, 0.42, 0.3), (0.22, 0.3, 0.22), "none", (12, 12)),
    ("gradient", (0.45, 0.4, 0.55), (0.25, 0.22, 0.3), "none", (1, 1)),
    ("flat", (0.5, 0.32, 0.28), (0.4, 0.25, 0.22), "random", (2, 2)),
]
SHIFTED_WALL_TEXTURES: List[
    Tuple[str, Tuple[float, ...], Tuple[float, ...], str, Tuple[float, float]]
] = [
    ("checker", (0.35, 0.35, 0.4), (0.2, 0.2, 0.25), "none", (10, 10)),
    ("flat", (0.6, 0.45, 0.35), (0.5, 0.38, 0.3), "random", (1, 1)),
]
# What the model compiles: training textures first, so their material ids are unchanged.
ALL_TABLE_TEXTURES = TABLE_TEXTURES + SHIFTED_TABLE_TEXTURES
ALL_WALL_TEXTURES = WALL_TEXTURES + SHIFTED_WALL_TEXTURES


def is_shifted_seed(seed: int) -> bool:
    return int(seed) >= SHIFTED_SEEDS_FROM


# Camera position offsets (m) of the scene camera; it keeps looking at the same point. Id 0 = none.
CAMERA_JITTER: List[Tuple[float, float, float]] = [
    (0.0, 0.0, 0.0),
    (0.03, 0.0, 0.0),
    (-0.03, 0.0, 0.0),
    (0.0, 0.03, 0.0),
    (0.0, -0.03, 0.0),
    (0.0, 0.0, 0.03),
    (0.0, 0.0, -0.03),
    (0.02, 0.02, 0.02),
    (-0.02, -0.02, -0.02),
]


@dataclass
class Appearance:
    """One sampled look of the scene (all discrete ids)."""

    table_texture: int = 0
    wall_texture: int = 0
    light: int = 0
    object_colors: Dict[str, str] = field(default_factory=dict)
    distractors: List[int] = field(default_factory=list)  # slot ids in use
    distractor_colors: List[str] = field(default_factory=list)
    distractor_xy: List[Tuple[float, float]] = field(default_factory=list)
    camera_jitter: int = 0

    def as_dict(self) -> dict:
        return {
            "table_texture": self.table_texture,
            "wall_texture": self.wall_texture,
            "light": self.light,
            "object_colors": dict(self.object_colors),
            "distractors": list(self.distractors),
            "distractor_colors": list(self.distractor_colors),
            "camera_jitter": self.camera_jitter,
        }


def default_appearance(color_roles: Sequence[Tuple[str, str]]) -> Appearance:
    """The un-randomised look: first table/wall/light, task default colours, no distractors."""
    return Appearance(object_colors={role: default for role, default in color_roles})


def sample_appearance(
    seed: int,
    color_roles: Sequence[Tuple[str, str]],
    keep_out: Sequence[Tuple[float, float]],
    table_area: Tuple[float, float, float, float],
) -> Appearance:
    """A random look for appearance seed ``seed``. ``keep_out`` are task object xy positions
    distractors must not cover; ``table_area`` is (xmin, xmax, ymin, ymax) where they may stand.

    Scene factors, object colours, distractor choice and distractor placement come from separate
    streams of the seed, so one appearance seed gives the same table, walls, light, camera and
    distractor set for any task and layout (the human-video "scenes" rely on this).
    """
    scene_rng, color_rng, distractor_rng, place_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), 0xA77E]).spawn(4)
    )
    shifted = is_shifted_seed(seed)
    if shifted:  # ids past the training textures (see SHIFTED_SEEDS_FROM)
        table = len(TABLE_TEXTURES) + int(scene_rng.integers(len(SHIFTED_TABLE_TEXTURES)))
        wall = len(WALL_TEXTURES) + int(scene_rng.integers(len(SHIFTED_WALL_TEXTURES)))
    else:
        table = int(scene_rng.integers(len(TABLE_TEXTURES)))
        wall = int(scene_rng.integers(len(WALL_TEXTURES)))
    light = int(scene_rng.integers(len(LIGHTS)))
    jitter = int(scene_rng.integers(len(CAMERA_JITTER)))
    names = list(PALETTE)
    picked = color_rng.choice(len(names), size=len(color_roles), replace=False)
    colors = {role: names[i] for (role, _), i in zip(color_roles, picked)}
    k = int(
        distractor_rng.integers(
            MAX_DISTRACTORS if shifted else 0,
            (len(DISTRACTOR_SLOTS) if shifted else MAX_DISTRACTORS) + 1,
        )
    )
    slots = sorted(
        int(s) for s in distractor_rng.choice(len(DISTRACTOR_SLOTS), size=k, replace=False)
    )
    # Distractors never share a colour with a named object, so every instruction stays unambiguous.
    free_colors = [n for n in names if n not in colors.values()]
    dcolors = [free_colors[int(distractor_rng.integers(len(free_colors)))] for _ in slots]
    xy: List[Tuple[float, float]] = []
    placed = list(keep_out)
    for _ in slots:
        for _attempt in range(100):
            p = (
                float(place_rng.uniform(table_area[0], table_area[1])),
                float(place_rng.uniform(table_area[2], table_area[3])),
            )
            if all((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 > 0.12**2 for q in placed):
                break
        placed.append(p)
        xy.append(p)
    return Appearance(
        table_texture=table,
        wall_texture=wall,
        light=light,
        object_colors=colors,
        distractors=slots,
        distractor_colors=dcolors,
        distractor_xy=xy,
        camera_jitter=jitter,
    )


def texture_assets_xml() -> str:
    """Textures and materials for every table and wall option, compiled into every model."""
    out = []
    for prefix, table in (("table", ALL_TABLE_TEXTURES), ("wall", ALL_WALL_TEXTURES)):
        for i, (builtin, rgb1, rgb2, mark, rep) in enumerate(table):
            extra = (
                ' mark="random" random="0.25" markrgb="%s"'
                % " ".join("%.3f" % (0.85 * c) for c in rgb2)
                if mark == "random"
                else ""
            )
            out.append(
                '<texture name="%s_tex%d" type="2d" builtin="%s" rgb1="%s" rgb2="%s" '
                'width="256" height="256"%s/>'
                % (
                    prefix,
                    i,
                    builtin,
                    " ".join("%.3f" % c for c in rgb1),
                    " ".join("%.3f" % c for c in rgb2),
                    extra,
                )
            )
            out.append(
                '<material name="%s_mat%d" texture="%s_tex%d" texrepeat="%g %g" '
                "/>" % (prefix, i, prefix, i, rep[0], rep[1])
            )
    return "\n".join(out)
