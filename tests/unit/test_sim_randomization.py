"""Visual randomisation changes pixels, never physics; appearance seeds are separate from
layouts."""

import numpy as np
import pytest

from clap_ros.sim import SimWorld, make_expert, run_plan
from clap_ros.sim.appearance import (
    CAMERA_JITTER,
    DISTRACTOR_SLOTS,
    LIGHTS,
    TABLE_TEXTURES,
    WALL_TEXTURES,
)


def _trajectory(world):
    plan = make_expert(world).plan()
    states = []
    ok = run_plan(world, plan, on_step=lambda w, t: states.append(w.data.qpos.copy()))
    return ok, np.array(states)


@pytest.mark.parametrize("robot,task", [("fr3", "pick_place"), ("ur5e", "push")])
def test_randomisation_changes_pixels_but_not_dynamics(robot, task):
    plain = SimWorld(robot=robot, task=task, seed=3, randomize=False, image_size=(64, 64))
    fancy = SimWorld(robot=robot, task=task, seed=3, randomize=True, image_size=(64, 64))
    assert plain.layout.as_dict() == fancy.layout.as_dict()
    img_plain, img_fancy = plain.render(), fancy.render()
    assert np.abs(img_plain.astype(int) - img_fancy.astype(int)).mean() > 5
    ok_plain, traj_plain = _trajectory(plain)
    ok_fancy, traj_fancy = _trajectory(fancy)
    assert ok_plain and ok_fancy
    # Bit-identical joint and object trajectories (objects' free joints are part of qpos).
    np.testing.assert_array_equal(traj_plain, traj_fancy)


def test_appearance_seed_changes_look_not_layout():
    a = SimWorld(robot="fr3", task="stack", seed=1, appearance_seed=100, image_size=(64, 64))
    b = SimWorld(robot="fr3", task="stack", seed=1, appearance_seed=200, image_size=(64, 64))
    assert a.layout.as_dict() == b.layout.as_dict()
    assert a.appearance != b.appearance
    # One look reused for another task and layout: all scene factors except object colours match.
    c = SimWorld(robot="fr3", task="push", seed=9, appearance_seed=100, image_size=(64, 64))
    for key in ("table_texture", "wall_texture", "light", "camera_jitter"):
        assert c.appearance[key] == a.appearance[key]
    assert c.layout.as_dict() != a.layout.as_dict()
    # reset() keeps honouring a separate appearance seed.
    a.reset(seed=2, appearance_seed=200)
    b.reset(seed=2)
    assert a.layout.as_dict() == b.layout.as_dict()
    assert a.appearance != b.appearance


def test_appearance_factors_are_discrete_ids_in_range_and_vary_over_seeds():
    seen = {k: set() for k in ("table_texture", "wall_texture", "light", "camera_jitter")}
    n_distractors = set()
    world = SimWorld(robot="ur5e", task="pick_place", seed=0, image_size=(32, 32))
    for seed in range(40):
        world.reset(seed=seed)
        app = world.appearance
        for k in seen:
            seen[k].add(app[k])
        assert all(0 <= d < len(DISTRACTOR_SLOTS) for d in app["distractors"])
        assert len(app["distractors"]) == len(app["distractor_colors"])
        n_distractors.add(len(app["distractors"]))
        assert set(app["object_colors"]) == {"cube", "bowl"}
    assert (
        seen["table_texture"] <= set(range(len(TABLE_TEXTURES))) and len(seen["table_texture"]) > 1
    )
    assert seen["wall_texture"] <= set(range(len(WALL_TEXTURES))) and len(seen["wall_texture"]) > 1
    assert seen["light"] <= set(range(len(LIGHTS))) and len(seen["light"]) > 1
    assert (
        seen["camera_jitter"] <= set(range(len(CAMERA_JITTER))) and len(seen["camera_jitter"]) > 1
    )
    assert len(n_distractors) > 1


def test_distractors_are_visual_only_and_visible():
    world = SimWorld(robot="fr3", task="push", seed=0, image_size=(64, 64))
    m = world.model
    for i in range(len(DISTRACTOR_SLOTS)):
        g = m.geom("distractor%d" % i).id
        assert m.geom_contype[g] == 0 and m.geom_conaffinity[g] == 0
        assert m.geom_bodyid[g] == 0  # static, in the world body: no mass, no dynamics
    # Find a seed with distractors: they stand on the table (z > 0), unused slots are hidden.
    for seed in range(20):
        world.reset(seed=seed)
        used = world.appearance["distractors"]
        if used:
            break
    assert used
    for i in range(len(DISTRACTOR_SLOTS)):
        z = m.geom_pos[m.geom("distractor%d" % i).id][2]
        assert (z > 0) if i in used else (z < -1)


def test_unrandomised_look_is_fixed():
    a = SimWorld(robot="fr3", task="pick_place", seed=1, randomize=False, image_size=(48, 48))
    b = SimWorld(robot="fr3", task="pick_place", seed=2, randomize=False, image_size=(48, 48))
    assert a.appearance == b.appearance
    assert a.appearance["distractors"] == [] and a.appearance["camera_jitter"] == 0
    assert a.instruction == "put the red cube in the blue bowl"
