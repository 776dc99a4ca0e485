"""The diagnostic ladder's oracle rungs (issue 14): the expert's plan as every RF chunk through the
action core, the expert replanning from any state, and the learned state-oracle trainer."""

import json

import numpy as np
import pytest

from clap_ros.eval import direct_eval
from clap_ros.eval.sim_eval import EvalConfig


def _cfg(tmp_path, **kw):
    base = dict(
        robot="fr3",
        tasks=("reach",),
        episodes=2,
        seed=3,
        policy="oracle-expert",
        mode="direct",
        out=str(tmp_path / "out"),
        progress=False,
        reflexes=False,
    )
    base.update(kw)
    return EvalConfig(**base)


def test_oracle_expert_chunks_through_the_action_core_succeed(tmp_path):
    result = direct_eval.run_direct(_cfg(tmp_path, tasks=("reach", "push")), log=lambda t: None)
    assert result["policy"] == "oracle-expert"
    for ep in result["episodes"]:
        assert not ep["error"], ep["error"]
        assert ep["success"], ep
        # the RF path ran: plans while enabled, trajectories streamed by the action core
        assert ep["plans"] >= 1 and ep["commands"] >= 5
        assert "inference_p50_ms" in ep["figures"]["action_node"]


def test_feedback_expert_through_the_action_core_succeeds_and_is_reach_only(tmp_path):
    result = direct_eval.run_direct(_cfg(tmp_path, policy="oracle-field"), log=lambda t: None)
    assert [ep["success"] for ep in result["episodes"]] == [True, True]
    assert all(ep["commands"] >= 5 for ep in result["episodes"])
    result = direct_eval.run_direct(
        _cfg(tmp_path, policy="oracle-field", tasks=("push",), episodes=1, out=str(tmp_path / "p")),
        log=lambda t: None,
    )
    assert "feedback expert for reach only" in result["episodes"][0]["error"]


def test_field_chunk_is_a_capped_straight_line_from_the_state():
    from clap_ros.robots import load_profile
    from clap_ros.sim.expert import FIELD_SPEED, field_chunk

    prof = load_profile("fr3")
    q0 = prof.home.copy()
    goal = q0 + np.array([0.6, 0.4, -0.2, 0.5, 0.1, 0.3, -0.4])
    dt = 1.0 / 15.0
    c = field_chunk(q0, goal, prof.limits.velocity, 16, dt)
    assert c.shape == (16, 7) and np.array_equal(c[0], q0)
    speed = np.abs(np.diff(c, axis=0)) / dt
    assert np.all(speed <= FIELD_SPEED * prof.limits.velocity + 1e-9)
    err = np.linalg.norm(c - goal, axis=1)
    assert np.all(np.diff(err) < 0) and err[-1] < 0.5 * err[0]
    # straight line in joint space: every step is along the initial direction
    d = (c[1:] - q0) / np.linalg.norm(c[1:] - q0, axis=1, keepdims=True)
    np.testing.assert_allclose(
        d, np.tile((goal - q0) / np.linalg.norm(goal - q0), (15, 1)), atol=1e-6
    )
    np.testing.assert_allclose(
        field_chunk(goal, goal, prof.limits.velocity, 4, dt), np.tile(goal, (4, 1))
    )


def test_oracle_policies_are_direct_mode_only_and_need_their_file(tmp_path):
    with pytest.raises(ValueError, match="--mode direct only"):
        _cfg(tmp_path, mode="ros").validate()
    with pytest.raises(ValueError, match="not found"):
        _cfg(tmp_path, policy="oracle:%s" % (tmp_path / "missing.onnx")).validate()


def test_expert_replans_from_any_state():
    from clap_ros.sim.driver_core import SimDriverCore, SimDriverParams
    from clap_ros.sim.expert import ArmExpert

    core = SimDriverCore(
        SimDriverParams(robot="fr3", task="reach", seed=5, camera_rate_hz=0.0).validate()
    )
    core.reset(5)
    expert = ArmExpert(core.world)
    home = expert.plan()
    again = expert.plan_from(core.profile.home, 1.0)
    ts = np.linspace(0.0, home.duration, 7)
    np.testing.assert_array_equal(home.sample_many(ts)[0], again.sample_many(ts)[0])
    q_off = core.profile.home + np.array([0.2, -0.15, 0.1, 0.2, -0.1, 0.15, 0.1])
    replan = expert.plan_from(q_off, 0.6)
    q0, qd0, g0 = replan.sample(0.0)
    np.testing.assert_allclose(q0, q_off, atol=1e-9)
    assert np.allclose(qd0, 0.0) and g0 == pytest.approx(0.6)
    # it ends where the home plan ends (the reach target's IK solution, same TCP position)
    p_end_home, _ = expert.ik.fk(home.sample(home.duration)[0])
    p_end, _ = expert.ik.fk(replan.sample(replan.duration)[0])
    np.testing.assert_allclose(p_end, p_end_home, atol=2e-3)


def test_state_oracle_trainer_exports_and_selects_by_closed_loop(tmp_path):
    import onnxruntime as ort

    from clap_train.oracle import OracleConfig, train

    cfg = OracleConfig(
        layouts=6,
        perturbed_per_layout=3,
        steps=40,
        batch=64,
        eval_every=20,
        eval_episodes=1,
        out=str(tmp_path / "oracle"),
    )
    s = train(cfg, progress=False)
    assert s["samples"] > 6 * 20
    assert [h["step"] for h in s["history"]] == [20, 40]
    assert all("closed_loop" in h and h["closed_loop"]["episodes"] == 1 for h in s["history"])
    assert s["chosen_by"].startswith("closed-loop success")
    sess = ort.InferenceSession(s["onnx"], providers=["CPUExecutionProvider"])
    out = sess.run(
        None, {"obs": np.zeros((1, 3), np.float32), "state": np.ones((1, 8), np.float32)}
    )
    assert out[0].shape == (1, 16, 8) and np.all(np.isfinite(out[0]))
    assert json.loads((tmp_path / "oracle" / "summary.json").read_text())["chosen_step"] in (20, 40)
