"""The scripted experts solve every task on both robots in at least 95 % of seeded episodes.

No rendering here: success is a physics question, and the sweep must stay fast.
"""

import pytest

from clap_ros.sim import TASKS, SimWorld, make_expert, run_plan

SEEDS = range(100, 120)


@pytest.mark.slow
@pytest.mark.parametrize("robot", ["fr3", "ur5e"])
@pytest.mark.parametrize("task", list(TASKS))
def test_expert_success_rate(robot, task):
    world = SimWorld(robot=robot, task=task, seed=SEEDS[0])
    failures = []
    for seed in SEEDS:
        world.reset(seed=seed)
        assert not world.success(), "seed %d starts solved" % seed
        if not run_plan(world, make_expert(world).plan()):
            failures.append(seed)
    rate = 1.0 - len(failures) / len(SEEDS)
    assert rate >= 0.95, "%s/%s expert failed seeds %s" % (robot, task, failures)
