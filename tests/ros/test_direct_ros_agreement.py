"""eval-sim --policy expert agrees between --mode direct (one process, virtual clock) and
--mode ros (sim_driver + expert_node processes over DDS) on the same seeds."""

import json

import pytest
from ros_harness import fresh_domain_id

pytestmark = [pytest.mark.ros]

from clap_ros.eval.direct_eval import run_direct  # noqa: E402
from clap_ros.eval.sim_eval import EvalConfig, SimEvaluator  # noqa: E402

TASKS = ("reach", "push")
SEED = 200


def _cfg(mode, out, **kw):
    return EvalConfig(
        robot="fr3",
        tasks=TASKS,
        episodes=2,
        seed=SEED,
        policy="expert",
        mode=mode,
        out=str(out),
        progress=False,
        **kw,
    )


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agreement")
    direct = run_direct(_cfg("direct", tmp / "direct"), log=lambda text: None)
    # Half real time on sim time: on a loaded CI machine a real-time driver falls behind the
    # wall clock and the expert's wall-clock timing with it; on /clock both slow together.
    ros = SimEvaluator(
        _cfg("ros", tmp / "ros", domain_id=fresh_domain_id(), real_time_factor=0.5),
        log=lambda text: None,
    ).run()
    return direct, ros, tmp


def test_both_modes_ran_every_episode(both):
    direct, ros, tmp = both
    for result, mode in ((direct, "direct"), (ros, "ros")):
        assert result["complete"], result["error"]
        assert result["mode"] == mode and result["policy"] == "expert"
        assert [(e["task"], e["seed"]) for e in result["episodes"]] == [
            (t, SEED + i) for t in TASKS for i in range(2)
        ]
        on_disk = json.loads((tmp / mode / "result.json").read_text())
        assert on_disk["mode"] == mode


def test_same_outcomes_on_the_same_seeds(both):
    direct, ros, _ = both
    for d, r in zip(direct["episodes"], ros["episodes"]):
        where = "%s seed %d" % (d["task"], d["seed"])
        assert d["instruction"] == r["instruction"], where
        assert d["success"] and r["success"], (where, d["error"], r["error"])
        assert d["rejected_commands"] == r["rejected_commands"] == 0, where
        # the same layout: the same start distance; both end at the goal
        assert d["goal_distance_start_m"] == pytest.approx(r["goal_distance_start_m"], abs=1e-3)
        assert d["goal_distance_end_m"] < 0.03 and r["goal_distance_end_m"] < 0.03, where
        assert d["commands"] > 0 and r["commands"] > 0, where
    for task in TASKS:
        assert direct["tasks"][task]["successes"] == ros["tasks"][task]["successes"] == 2
