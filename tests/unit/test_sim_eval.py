"""clap_ros.eval.sim_eval without ROS: configuration checks, task selection, the result summary and
Markdown report, and the command line's errors. The closed loop itself runs in
tests/e2e/test_closed_loop.py."""

import json

import pytest

from clap_ros.eval import sim_eval as E
from clap_ros.sim.tasks import TASKS


def test_tasks_parse_from_repeats_commas_and_all():
    assert E.parse_tasks(None) == ["pick_place"]
    assert E.parse_tasks(["reach", "push,pick_place"]) == ["reach", "push", "pick_place"]
    assert E.parse_tasks(["all"]) == sorted(TASKS)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tasks=["fly"]), "unknown task fly"),
        (dict(tasks=["reach", "reach"]), "listed twice"),
        (dict(tasks=[]), "no task"),
        (dict(episodes=0), "episodes must be >= 1"),
        (dict(command_mode="teleport"), "command_mode"),
        (dict(backend="tpu"), "backend"),
        (dict(real_time_factor=0.0), "real_time_factor"),
    ],
)
def test_bad_configs_are_refused_with_the_field_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        E.EvalConfig(**kwargs).validate()


def test_timeouts_are_per_task_unless_given():
    cfg = E.EvalConfig()
    assert cfg.timeout_for("reach") == E.TASK_TIMEOUT_S["reach"]
    assert cfg.timeout_for("pick_place") == E.TASK_TIMEOUT_S["pick_place"]
    assert E.EvalConfig(timeout_s=7.5).timeout_for("reach") == 7.5
    assert set(TASKS) <= set(E.TASK_TIMEOUT_S)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(E.EvalError, match="no manifest.yaml"):
        E.resolve_model(str(tmp_path / "nothing"))
    assert (E.resolve_model("models/default") / "manifest.yaml").is_file()


def _episodes():
    return [
        E.EpisodeOutcome(
            "reach", 0, "reach the red target", True, 4.0, 4.0, 5.0, 120, 10, 20, 0.6, 0
        ),
        E.EpisodeOutcome(
            "reach", 1, "reach the blue target", False, None, 20.0, 21.0, 600, 50, 100, 0.9, 2
        ),
        E.EpisodeOutcome(
            "reach", 2, "reach the red target", True, 6.0, 6.0, 7.0, 150, 12, 30, 0.5, 0
        ),
        E.EpisodeOutcome(
            "push",
            0,
            "push the cube",
            False,
            None,
            1.0,
            3.0,
            0,
            0,
            0,
            0.0,
            0,
            error="action_node exited (code 1)\nTraceback ...",
        ),
    ]


def test_summary_counts_successes_per_task(tmp_path):
    cfg = E.EvalConfig(tasks=["reach", "push"], episodes=3)
    r = E.summarize(cfg, "/m", _episodes(), wall_s=12.0, error="action_node exited (code 1)")
    reach, push = r["tasks"]["reach"], r["tasks"]["push"]
    assert reach["episodes"] == 3 and reach["successes"] == 2
    assert reach["success_rate"] == pytest.approx(2 / 3)
    assert reach["median_time_to_success_s"] == pytest.approx(5.0)
    assert reach["rejected_commands"] == 2 and reach["median_arm_motion_rad"] == pytest.approx(0.6)
    assert push["successes"] == 0 and push["episodes_with_errors"] == 1
    assert push["median_time_to_success_s"] is None
    assert r["complete"] is False  # an error, and push ran 1 of 3 episodes
    E.write_result(tmp_path, r)
    back = json.loads((tmp_path / "result.json").read_text())
    assert back["tasks"]["reach"]["successes"] == 2 and len(back["episodes"]) == 4
    assert back["config"]["tasks"] == ["reach", "push"]
    md = (tmp_path / "report.md").read_text()
    assert "| reach | 2/3 | 67 % | 5.0 |" in md
    assert "| push | 0/1 | 0 % | - |" in md
    assert "**Incomplete:** action_node exited (code 1)" in md
    assert "- push seed 0: action_node exited (code 1)" in md and "Traceback" not in md


def test_goal_distance_and_progress_are_medians_over_episodes():
    eps = _episodes()[:3]
    for e, (start, end, closest) in zip(
        eps, [(0.2, 0.01, 0.01), (0.2, 0.3, 0.15), (0.1, 0.02, 0.02)]
    ):
        e.goal_distance_start_m, e.goal_distance_end_m, e.goal_distance_min_m = start, end, closest
    assert [E.goal_progress(e) for e in eps] == pytest.approx([0.95, -0.5, 0.8])
    r = E.summarize(
        E.EvalConfig(tasks=["reach", "push"], episodes=3), "/m", _episodes()[3:] + eps, wall_s=1.0
    )
    reach = r["tasks"]["reach"]
    assert reach["median_final_goal_distance_m"] == pytest.approx(0.02)
    assert reach["median_min_goal_distance_m"] == pytest.approx(0.02)
    assert reach["median_goal_progress"] == pytest.approx(0.8)
    # a driver that reports no distance (push here) leaves the figures empty, not zero
    push = r["tasks"]["push"]
    assert push["median_final_goal_distance_m"] is None and push["median_goal_progress"] is None
    md = E.report_markdown(r)
    assert "| reach | 2/3 | 67 % | 5.0 | 0.020 / 0.020 | 80 % |" in md
    assert "| push | 0/1 | 0 % | - | - | - |" in md


def test_runtime_figures_are_medians_over_episodes_and_reach_the_report():
    eps = [dict(e.to_dict()) for e in _episodes()[:3]]
    eps[0]["figures"] = {"action_node": {"commands_rate_hz": "100", "inference_p50_ms": "30"}}
    eps[1]["figures"] = {"action_node": {"commands_rate_hz": "90", "inference_p50_ms": "nan"}}
    eps[2]["figures"] = {
        "action_node": {"commands_rate_hz": "80", "inference_p50_ms": "n/a"},
        "planner_node": {"plans_rate_hz": "5"},
    }
    figs = E.runtime_figures(eps)
    assert figs == {
        "action_node": {"commands_rate_hz": 90.0, "inference_p50_ms": 30.0},
        "planner_node": {"plans_rate_hz": 5.0},
    }
    r = E.summarize(E.EvalConfig(tasks=["reach"], episodes=3), "/m", _episodes()[:3], wall_s=1.0)
    r["episodes"] = eps
    md = E.report_markdown(r)
    assert "- action_node: commands_rate_hz 90, inference_p50_ms 30" in md


def test_complete_only_when_every_episode_ran_without_error():
    eps = [e for e in _episodes() if e.task == "reach"]
    cfg = E.EvalConfig(tasks=["reach"], episodes=3)
    assert E.summarize(cfg, "/m", eps, wall_s=1.0)["complete"] is True
    assert (
        E.summarize(E.EvalConfig(tasks=["reach"], episodes=4), "/m", eps, wall_s=1.0)["complete"]
        is False
    )


def test_cli_help_and_argument_errors(capsys, tmp_path):
    from clap_ros.cli import main

    with pytest.raises(SystemExit) as e:
        main(["eval-sim", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--episodes" in text and "result.json" in text and "exit status" in text
    assert main(["eval-sim", "--task", "fly", "--out", str(tmp_path / "x")]) == 2
    assert "unknown task fly" in capsys.readouterr().err
    assert main(["eval-sim", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "y")]) == 2
    assert "no manifest.yaml" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_demo_model_policy_refuses_a_missing_bundle(capsys, tmp_path):
    from clap_ros.cli import main

    assert (
        main(
            [
                "demo",
                "--policy",
                "model",
                "--model",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "d"),
            ]
        )
        == 2
    )
    assert "no manifest.yaml" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    # the model drives by default
    assert main(["demo", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "d")]) == 2
    assert "no manifest.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--policy {expert,model}" in capsys.readouterr().out


def test_an_earlier_result_or_bag_is_never_overwritten(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "result.json").write_text("{}")
    with pytest.raises(E.EvalError, match="already holds a result.json"):
        E.SimEvaluator(E.EvalConfig(tasks=["reach"], out=str(tmp_path / "a")))
    bag = tmp_path / "b" / "bags" / "fr3_reach_seed000005"
    bag.mkdir(parents=True)
    with pytest.raises(E.EvalError, match="never overwritten.*fr3_reach_seed000005"):
        E.SimEvaluator(
            E.EvalConfig(
                tasks=["reach"], out=str(tmp_path / "b"), seed=4, episodes=2, record_bags=True
            )
        )
    E.SimEvaluator(
        E.EvalConfig(tasks=["reach"], out=str(tmp_path / "b"), seed=4, episodes=1, record_bags=True)
    )  # seed 4 only: nothing taken
