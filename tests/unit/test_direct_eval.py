"""eval-sim --mode direct: one process, the driver core on a virtual clock (no ROS needed)."""

import json

import pytest

from clap_ros import topics as T
from clap_ros.data.bags import BagReader
from clap_ros.eval import direct_eval
from clap_ros.eval.sim_eval import EvalConfig, parse_tasks, report_markdown
from clap_ros.robots import load_profile


def _cfg(tmp_path, **kw):
    base = dict(
        robot="fr3",
        tasks=("reach",),
        episodes=1,
        seed=7,
        policy="expert",
        mode="direct",
        out=str(tmp_path / "out"),
        progress=False,
    )
    base.update(kw)
    return EvalConfig(**base)


def test_expert_episode_result_files_and_bag(tmp_path):
    result = direct_eval.run_direct(_cfg(tmp_path, record_bags=True), log=lambda t: None)
    assert result["complete"] and result["mode"] == "direct"
    (ep,) = result["episodes"]
    assert ep["success"] and ep["rejected_commands"] == 0 and ep["commands"] > 0
    assert ep["goal_distance_end_m"] < 0.01 < ep["goal_distance_start_m"]
    assert 0 < ep["time_to_success_s"] < 20.0 and ep["wall_s"] > 0
    on_disk = json.loads((tmp_path / "out" / "result.json").read_text())
    assert on_disk["mode"] == "direct" and on_disk["tasks"]["reach"]["successes"] == 1
    assert "Direct mode" in (tmp_path / "out" / "report.md").read_text()
    drv = load_profile("fr3").driver
    with BagReader(ep["bag"]) as bag:
        counts = bag.message_counts
        assert set(bag.topics) == set(direct_eval_topics())
        for topic in (
            T.CAMERA_IMAGE,
            T.CAMERA_INFO,
            drv.joint_states_topic,
            T.SIM_STATUS,
            T.INSTRUCTION,
            drv.trajectory_topic,
            drv.gripper_command_topic,
            T.EPISODE_OUTCOME,
        ):
            assert counts[topic] > 0, topic
        outcome = [m for t, _, _, m in bag.messages([T.EPISODE_OUTCOME])]
        assert json.loads(outcome[0].data)["success"] is True


def direct_eval_topics():
    from clap_ros.eval.direct_bag import recorded_topics

    return recorded_topics(load_profile("fr3"), "joint_trajectory")


def test_bag_topics_are_the_ros_mode_topics():
    pytest.importorskip("rclpy")
    from clap_ros.nodes.episode_runner import recorded_topics

    ros = set(recorded_topics(load_profile("fr3"), "joint_trajectory", wrist_camera=False))
    ros |= {T.PLAN, T.PLAN_TOKENS, T.DIAGNOSTICS, T.EPISODE_OUTCOME}
    assert set(direct_eval_topics()) == ros


def test_interrupt_returns_what_finished(tmp_path):
    cfg = _cfg(tmp_path, episodes=3)
    seen = []

    def on_episode(o):
        seen.append(o)
        if len(seen) == 2:
            raise KeyboardInterrupt

    outcomes, error = direct_eval.run_outcomes(cfg, on_episode=on_episode)
    assert error == "interrupted" and [o.seed for o in outcomes] == [7, 8]


def test_jobs_give_the_same_outcomes(tmp_path):
    one = direct_eval.run_episodes(_cfg(tmp_path, episodes=2, out=None))
    two = direct_eval.run_episodes(_cfg(tmp_path, episodes=2, out=None, jobs=2))
    key = [(e["seed"], e["success"], round(e["goal_distance_end_m"], 4)) for e in one["episodes"]]
    assert key == [
        (e["seed"], e["success"], round(e["goal_distance_end_m"], 4)) for e in two["episodes"]
    ]


def test_model_policy_runs_the_cores_on_the_virtual_clock(tmp_path):
    result = direct_eval.run_direct(
        _cfg(tmp_path, policy="model", timeout_s=2.0, latency_ms=20.0), log=lambda t: None
    )
    (ep,) = result["episodes"]
    assert not ep["error"], ep["error"]
    assert ep["plans"] >= 2 and ep["commands"] > 0 and ep["duration_s"] >= 2.0
    assert "frame_to_command_run_n" in ep["figures"]["action_node"]
    assert "the CLAP cores through VirtualStack, inference latency 20 ms" in report_markdown(result)


def test_task_all_and_bad_mode_arguments():
    from clap_ros.sim.tasks import TASKS

    assert parse_tasks(["all"]) == sorted(TASKS)
    with pytest.raises(ValueError, match="--mode direct"):
        EvalConfig(mode="ros", jobs=2).validate()
    with pytest.raises(ValueError, match="policy"):
        EvalConfig(mode="direct", policy="oracle").validate()
