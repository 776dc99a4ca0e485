"""The shifted appearance-seed range: unseen textures and more distractors, nothing else changes."""

import numpy as np

from clap_ros.sim import SimWorld
from clap_ros.sim.appearance import (
    DISTRACTOR_SLOTS,
    MAX_DISTRACTORS,
    SHIFTED_SEEDS_FROM,
    TABLE_TEXTURES,
    WALL_TEXTURES,
    sample_appearance,
)

ROLES = (("cube", "red"), ("bowl", "blue"))
AREA = (0.3, 0.7, -0.3, 0.3)


def test_shifted_seeds_use_only_unseen_textures_and_more_distractors():
    train = [sample_appearance(s, ROLES, [], AREA) for s in range(300)]
    shifted = [sample_appearance(SHIFTED_SEEDS_FROM + s, ROLES, [], AREA) for s in range(60)]
    assert max(a.table_texture for a in train) < len(TABLE_TEXTURES)
    assert max(a.wall_texture for a in train) < len(WALL_TEXTURES)
    assert max(len(a.distractors) for a in train) <= MAX_DISTRACTORS
    assert min(a.table_texture for a in shifted) >= len(TABLE_TEXTURES)
    assert min(a.wall_texture for a in shifted) >= len(WALL_TEXTURES)
    counts = {len(a.distractors) for a in shifted}
    assert min(counts) >= MAX_DISTRACTORS and max(counts) == len(DISTRACTOR_SLOTS)
    assert len({a.table_texture for a in shifted}) > 1


def test_shifted_look_renders_with_the_same_layout_rules():
    world = SimWorld(
        robot="fr3",
        task="push",
        seed=5,
        appearance_seed=SHIFTED_SEEDS_FROM + 5,
        image_size=(48, 48),
    )
    plain = SimWorld(robot="fr3", task="push", seed=5, image_size=(48, 48))
    assert world.layout.as_dict() == plain.layout.as_dict()
    app = world.appearance
    assert (
        app["table_texture"] >= len(TABLE_TEXTURES) and len(app["distractors"]) >= MAX_DISTRACTORS
    )
    m = world.model
    table = m.geom("table").id
    assert m.mat_texid[m.geom_matid[table]].max() >= 0  # the unseen material is compiled in
    assert np.abs(world.render().astype(int) - plain.render().astype(int)).mean() > 3
    # a world reset onto a training seed looks like a training seed again
    world.reset(seed=5, appearance_seed=5)
    assert world.appearance == plain.appearance
