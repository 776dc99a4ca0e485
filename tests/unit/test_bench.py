"""make bench's closed-loop figures from result dicts (no ROS, no sim): wall time per episode per
mode, the ros/direct ratio, and frame -> first command pooled over the run with its sample count."""

import pytest

from clap_ros import bench_closed_loop as B


def _ros_episode(wall, success=False, run_n=None, p50=None, p99=None, window=None):
    action = {"inference_p50_ms": "30", "inference_p99_ms": "40"}
    if run_n is not None:
        action.update(
            frame_to_command_run_n=str(run_n),
            frame_to_command_run_p50_ms=str(p50),
            frame_to_command_run_p99_ms=str(p99),
        )
    if window is not None:  # the node's windowed figure (last 5 s before the stop)
        action.update(frame_to_command_p50_ms=str(window), frame_to_command_p99_ms=str(window))
    return {
        "task": "reach",
        "seed": 0,
        "success": success,
        "wall_s": wall,
        "duration_s": 20.0,
        "figures": {
            "action_node": action,
            "encoder_node": {"frame_to_latent_p50_ms": "12", "frame_to_latent_p99_ms": "20"},
        },
    }


def test_mode_figures_and_ratio():
    ros = B.mode_figures(
        "ros",
        {
            "wall_s": 100.0,
            "error": "",
            "episodes": [_ros_episode(20.0), _ros_episode(30.0, success=True), _ros_episode(40.0)],
        },
        cpu_s=60.0,
        load_average=3.25,
    )
    direct = B.mode_figures(
        "direct",
        {
            "wall_s": 9.0,
            "episodes": [{"wall_s": 2.0, "success": True}, {"wall_s": 3.0}, {"wall_s": 4.0}],
        },
    )
    assert (ros.episodes, ros.successes) == (3, 1)
    assert ros.wall_per_episode_mean_s == pytest.approx(30.0)
    assert direct.wall_per_episode_median_s == pytest.approx(3.0)
    assert B.speed_ratio(ros, direct) == pytest.approx(10.0)
    text = B.format_comparison([ros, direct])
    assert "ros" in text.splitlines()[2] and "1/3" in text.splitlines()[2]
    assert ros.cpu_per_episode_s == pytest.approx(20.0)
    assert text.splitlines()[2].split()[3:] == ["30.00", "30.00", "20.00", "20.00", "100.0", "3.2"]
    assert text.splitlines()[3].split()[3:] == ["3.00", "3.00", "-", "-", "9.0", "-"]
    assert "10.0x (target >= 10x: met)" in text
    slow = B.mode_figures("direct", {"wall_s": 9.0, "episodes": [{"wall_s": 5.0}]})
    assert "6.0x (target >= 10x: NOT met)" in B.format_comparison([ros, slow])


def test_ratio_needs_both_modes_to_have_run():
    ros = B.mode_figures("ros", {"wall_s": 5.0, "error": "sim_driver exited", "episodes": []})
    direct = B.mode_figures("direct", {"wall_s": 1.0, "episodes": [{"wall_s": 1.0}]})
    assert ros.wall_per_episode_mean_s is None
    assert B.speed_ratio(ros, direct) is None
    text = B.format_comparison([ros, direct])
    assert "speed-up ros/direct: -" in text and "ros run incomplete: sim_driver exited" in text
    assert "speed-up" not in B.format_comparison([direct])


def test_direct_jobs_row_shares_the_run_wall_time_out_over_its_episodes():
    ros = B.mode_figures("ros", {"wall_s": 100.0, "episodes": [_ros_episode(24.0)] * 4})
    # 4 episodes of 5 s each, 2 at a time: 10 s of run wall time, 2.5 s per episode
    jobs = B.mode_figures(
        "direct-jobs", {"wall_s": 10.0, "throughput": True, "episodes": [{"wall_s": 5.0}] * 4}
    )
    assert jobs.wall_per_episode_mean_s == pytest.approx(2.5)
    assert B.speed_ratio(ros, jobs) == pytest.approx(9.6)
    assert "speed-up ros/direct-jobs (mean wall s per episode): 9.6x" in B.format_comparison(
        [ros, jobs]
    )


def test_pooled_figure_is_the_run_long_one_with_its_sample_count():
    # The node stays up across the episodes, so its run-long pool only grows: the episode with
    # the most samples covers the run. The last episode had no chunk in its last 5 s (no windowed
    # figure): the pooled one is still reported.
    eps = [
        _ros_episode(20.0, run_n=40, p50=31.0, p99=60.0, window=30.0),
        _ros_episode(20.0, run_n=95, p50=33.5, p99=71.2, window=35.0),
        _ros_episode(20.0, run_n=95, p50=33.5, p99=71.2),
    ]
    assert B.pooled_frame_to_command(eps) == {"n": 95, "p50_ms": 33.5, "p99_ms": 71.2}
    text = B.format_stack_table(eps)
    first = text.splitlines()[1]
    assert first.startswith("camera frame -> first command")
    assert first.split()[-7:] == ["33.5", "71.2", "95,", "pooled", "over", "the", "run"]
    assert "over 95 samples" in text
    latent = [ln for ln in text.splitlines() if ln.startswith("camera frame -> latent")][0]
    assert "12.0" in latent and "20.0" in latent and "median over episodes" in latent


def test_no_sample_says_so_instead_of_a_number():
    eps = [
        _ros_episode(20.0),
        {
            "task": "reach",
            "wall_s": 1.0,
            "figures": {"action_node": {"frame_to_command_run_n": "n/a"}},
        },
    ]
    assert B.pooled_frame_to_command(eps) is None
    text = B.format_stack_table(eps)
    assert "none: no chunk reached a command" in text.splitlines()[1]
    assert "samples)" not in text


def test_bench_refuses_bad_flags(capsys):
    from clap_ros.cli import main

    assert main(["bench", "--only", "sim,nope"]) == 2
    assert "unknown section nope" in capsys.readouterr().out
    assert main(["bench", "--only", "closed_loop", "--modes", "ros,fast"]) == 2
    assert "unknown mode fast" in capsys.readouterr().out
    assert main(["bench", "--episodes", "-1"]) == 2
    assert "--episodes must be >= 0" in capsys.readouterr().out
    assert main(["bench", "--timeout", "-2"]) == 2
    assert "--timeout must be >= 0" in capsys.readouterr().out
