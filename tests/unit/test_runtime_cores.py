"""The ROS-free cores (clap_ros.runtime) on the shipped bundle (onnxruntime CPU): encoder core,
planner core, the action controller's parts, and the VirtualStack that drives them on a virtual
clock. The same checks run once through the nodes in tests/ros."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from clap_ros.control.watchdog import State
from clap_ros.inference.policy import ClapRuntime
from clap_ros.robots import load_profile
from clap_ros.runtime import encoder_core as E
from clap_ros.runtime.action_inputs import ActionInputs
from clap_ros.runtime.chunk_stream import ChunkStream, interpolate
from clap_ros.runtime.encoder_core import EncoderCore
from clap_ros.runtime.messages import (
    check_instruction,
    check_joint_state,
    check_plausible,
    clip_text,
)
from clap_ros.runtime.params import ActionParams, EncoderParams, PlannerParams
from clap_ros.runtime.planner_core import PlannerCore
from clap_ros.runtime.position_stream import PositionStream
from clap_ros.runtime.stopping import StopPlanner
from clap_ros.runtime.tracking import TrackingMonitor
from clap_ros.runtime.virtual_stack import ARM, GRIPPER, TRAJECTORY, StackParams, VirtualStack

FR3 = load_profile("fr3")
NAMES = list(FR3.joint_names) + list(FR3.gripper.joint_names)
HOME = [float(v) for v in FR3.home] + [0.02, 0.02]


@pytest.fixture(scope="module")
def runtime():
    rt = ClapRuntime("models/default", backend="cpu", intra_op_num_threads=1)
    yield rt
    rt.close()


def image(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def image_msg(arr, encoding="rgb8", step=None, data=None):
    h, w = arr.shape[:2]
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    return SimpleNamespace(
        encoding=encoding,
        height=h,
        width=w,
        step=step or w * ch,
        is_bigendian=0,
        data=arr.tobytes() if data is None else data,
    )


# --- messages -----------------------------------------------------------------------------------
def test_joint_state_refusals_name_the_problem():
    state, measured = check_joint_state(FR3, NAMES, HOME)
    assert measured and state.shape == (8,)
    with pytest.raises(ValueError, match="more than once"):
        check_joint_state(FR3, NAMES + NAMES, HOME + HOME)  # every name twice
    with pytest.raises(ValueError, match="9 positions for 8 names"):
        check_joint_state(FR3, NAMES[:8], HOME)
    with pytest.raises(ValueError, match="8 positions for 9 names"):
        check_joint_state(FR3, NAMES, HOME[:8])
    with pytest.raises(ValueError, match="fr3_joint2"):
        check_joint_state(FR3, [n for n in NAMES if n != "fr3_joint2"], HOME[:8])
    for bad in (math.nan, math.inf):
        pos = list(HOME)
        pos[3] = bad
        with pytest.raises(ValueError, match="non-finite"):
            check_joint_state(FR3, NAMES, pos)
        pos = list(HOME)
        pos[8] = bad  # a finger joint
        with pytest.raises(ValueError, match="non-finite gripper"):
            check_joint_state(FR3, NAMES, pos)
    pos = list(HOME)
    pos[3] = -1.7e308  # finite, but no arm is there
    state, _ = check_joint_state(FR3, NAMES, pos)  # well-formed ...
    with pytest.raises(ValueError, match="fr3_joint4 = -1.7e.308 rad is more than 0.5 rad outside"):
        check_plausible(FR3, state)  # ... but not a measurement
    pos[3] = FR3.limits.lower[3] - 0.01  # a little past: a measurement
    check_plausible(FR3, check_joint_state(FR3, NAMES, pos)[0])
    inp = ActionInputs(FR3, SimpleNamespace(latent_tokens=16, latent_dim=64, tokens_per_chunk=4))
    pos[3] = 1e9
    ok, why = inp.joint_state(NAMES, pos, 1.0)
    assert not ok and "outside its limits" in why and inp.q_meas is None


def test_instruction_checks_and_log_text_is_capped():
    assert check_instruction("  pick the cube ", 1000) == ("pick the cube", "")
    for empty in ("", "   ", "\n\t"):
        text, why = check_instruction(empty, 1000)
        assert text is None and "empty instruction" in why
    text, why = check_instruction("x" * 100000, 1000)
    assert text is None and "100000 characters" in why and len(why) < 250
    assert clip_text("y" * 5000) == repr("y" * 80) + "... (5000 chars)"
    assert clip_text("short") == "'short'" and clip_text("é" * 3, quote=False) == "ééé"


# --- encoder core -------------------------------------------------------------------------------
def test_encoder_core_waits_for_calibration_then_encodes_like_the_runtime(runtime):
    core = EncoderCore(runtime, EncoderParams())
    rgb = image()
    r = core.encode(rgb, 1.0, now=0.0)
    assert not r.ok and r.refused == E.NO_CALIBRATION and "CameraInfo" in r.reason
    info = SimpleNamespace(width=64, height=48, k=[50.0, 0, 32, 0, 50.0, 24, 0, 0, 1], d=[0.0] * 5)
    assert core.set_camera_info(info) is None and core.calibrated
    r = core.encode(rgb, 1.5, now=0.1)
    assert (
        r.ok
        and r.stamp == 1.5
        and r.latent.shape == (runtime.bundle.latent_tokens, runtime.bundle.latent_dim)
    )
    np.testing.assert_allclose(r.latent, runtime.encode(rgb), rtol=1e-5, atol=1e-6)
    # the same frame as an Image message (bgr8) gives the same latent
    r2 = core.encode(image_msg(np.ascontiguousarray(rgb[..., ::-1]), "bgr8"), 1.6, now=0.2)
    np.testing.assert_allclose(r2.latent, r.latent, rtol=1e-5, atol=1e-6)
    assert core.counters["latents"] == 2 and core.counters[E.NO_CALIBRATION] == 1


def test_encoder_core_refuses_bad_frames_and_camera_info_and_counts_them(runtime):
    core = EncoderCore(runtime, EncoderParams(require_camera_info=False))
    bad = [
        image_msg(image(), "rgba16"),
        image_msg(image(), "rgb8", data=b"\0" * 10),
        image_msg(image(), "rgb8", step=3),
        np.zeros((4, 4), np.float64),
    ]
    for k, msg in enumerate(bad):
        r = core.encode(msg, float(k), now=float(k))
        assert not r.ok and r.refused == E.REJECTED and r.reason.startswith("rejected frame")
    assert core.counters[E.REJECTED] == len(bad)
    assert "uint8 HxWx3" in core.diagnostics()["last_refusal"]
    nan_k = SimpleNamespace(width=64, height=48, k=[math.nan] * 9, d=[0.0] * 5)
    assert "bad CameraInfo" in core.set_camera_info(nan_k)
    assert "bad CameraInfo" in core.set_camera_info(SimpleNamespace(width=1))
    assert core.counters["camera_info_refused"] == 2
    assert core.encode(image(), 9.0, now=9.0).ok  # still works afterwards


def test_encoder_core_rate_limit(runtime):
    # 32 Hz camera, at most 8 latents/s (times exact in binary, so the grid is exact)
    core = EncoderCore(runtime, EncoderParams(require_camera_info=False, max_rate_hz=8.0))
    outcomes = [core.encode(image(), k / 32, now=k / 32).ok for k in range(32)]
    assert outcomes[:5] == [True, False, False, False, True]
    assert sum(outcomes) == 8 and core.counters[E.RATE] == 24


# --- planner core -------------------------------------------------------------------------------
def fresh_planner(runtime, **kw):
    core = PlannerCore(runtime, FR3, PlannerParams(**kw))
    lat = (
        np.random.default_rng(0)
        .standard_normal((runtime.bundle.latent_tokens, runtime.bundle.latent_dim))
        .astype(np.float32)
    )
    return core, lat


def test_planner_core_plans_once_per_new_input_with_the_bundle_chunk_period(runtime):
    core, lat = fresh_planner(runtime)
    assert (
        core.step(0.0).plan is None
        and "waiting for instruction, latent, joint_states" in core.problems["inputs"][1]
    )
    assert core.set_instruction("put the red cube in the blue bowl", 0.0) is None
    assert core.on_latent(lat, 10.0, 10.0, source="hdr") is None
    assert core.on_joint_state(NAMES, HOME, 10.0, 10.0) is None
    step = core.step(10.1)
    p = step.plan
    assert p is not None and p.stamp == 10.0 and p.source == "hdr"
    assert p.chunk_dt == runtime.bundle.chunk_dt_s
    state, _ = check_joint_state(FR3, NAMES, HOME)
    idx, coarse = runtime.plan(lat, "put the red cube in the blue bowl", state)
    np.testing.assert_array_equal(p.indices, idx)
    np.testing.assert_allclose(p.targets, runtime.joint_targets(coarse, state), atol=1e-9)
    assert core.step(10.2).plan is None  # nothing new
    core.set_instruction("push the green ball", 10.2)
    assert core.step(10.3).plan is not None  # a new instruction replans
    assert core.counters["plans"] == 2


def test_planner_core_refuses_empty_and_huge_instructions(runtime):
    core, lat = fresh_planner(runtime)
    core.on_latent(lat, 1.0, 1.0)
    core.on_joint_state(NAMES, HOME, 1.0, 1.0)
    for bad in ("", "   ", "x" * 100000):
        why = core.set_instruction(bad, 1.0)
        assert why and len(why) < 300
    assert core.instruction == "" and core.counters["instructions_refused"] == 3
    assert core.step(1.0).plan is None  # never planned with
    assert core.set_instruction("pick the cube", 1.0) is None
    assert core.set_instruction(" ", 1.0) and core.instruction == "pick the cube"  # kept
    assert core.step(1.1).plan is not None
    assert "instruction" in core.problems  # the last receipt was refused


def test_planner_core_refuses_bad_joint_states_and_latents_keeping_the_last_good(runtime):
    core, lat = fresh_planner(runtime, instruction="pick the cube")
    assert core.on_joint_state(NAMES + NAMES, HOME + HOME, 1.0, 1.0)
    assert core.on_joint_state(NAMES, HOME[:5], 1.0, 1.0)
    assert core.on_latent(lat[:2], 1.0, 1.0)
    assert core.on_latent(lat * np.nan, 1.0, 1.0)
    assert core.counters["joint_states_refused"] == 2 and core.counters["latents_refused"] == 2
    assert core.step(1.0).plan is None
    core.on_joint_state(NAMES, HOME, 1.0, 1.0)
    core.on_latent(lat, 1.0, 1.0)
    assert core.step(1.1).plan is not None
    core.on_latent(lat, 2.0, 2.0)
    assert core.on_joint_state(NAMES, [math.nan] * 9, 2.0, 2.0)  # refused: not a measurement
    step = core.step(2.6)  # the good one (t=1.0) is now 1.6 s old: stale
    assert step.plan is None and "joint_states older than 0.50 s" in step.reason


def test_planner_core_stale_latent_and_gripper_fallback(runtime):
    core, lat = fresh_planner(runtime, instruction="pick the cube")
    core.on_joint_state(list(FR3.joint_names), HOME[:7], 5.0, 5.0)  # no finger joints
    core.on_latent(lat, 3.0, 5.0)
    step = core.step(5.0)
    assert step.plan is None and "latent is 2.00 s old" in step.reason
    core.on_latent(lat, 5.0, 5.0)
    core.on_gripper_command([0.25])
    step = core.step(5.1)
    assert step.plan is not None and "last commanded opening 0.25" in step.note


# --- action core parts --------------------------------------------------------------------------
def test_action_inputs_schedule_one_job_per_new_latent(runtime):
    inp = ActionInputs(FR3, runtime.bundle)
    lat = np.zeros((runtime.bundle.latent_tokens, runtime.bundle.latent_dim), np.float32)
    assert inp.take_job(True) is None
    inp.latent_in(lat, 1.0)
    inp.tokens_in(list(range(runtime.bundle.tokens_per_chunk)))
    assert inp.plan_in()
    assert inp.joint_state(NAMES, HOME, 1.0) == (True, "")
    assert inp.take_job(False) is None  # not running: no job
    job = inp.take_job(True)
    assert job is not None and job.stamp == 1.0 and job.state.shape == (8,)
    assert inp.take_job(True) is None  # one per latent
    assert not inp.latent_in(lat, 0.5)  # out of order: kept newer
    with pytest.raises(ValueError):
        inp.tokens_in([1, 2])
    with pytest.raises(ValueError):
        inp.tokens_in([10**6] * runtime.bundle.tokens_per_chunk)
    ok, why = inp.joint_state(NAMES + NAMES, HOME + HOME, 2.0)
    assert not ok and "more than once" in why
    assert inp.counters["joint_states_refused"] == 1 and inp.counters["plan_tokens_refused"] == 2
    assert inp.q_meas_stamp == 1.0  # the refused one was not taken


def test_tracking_monitor_trips_after_persisting():
    p = ActionParams(tracking_tolerance_rad=0.1, tracking_persist_s=0.05, tracking_lag_s=0.0)
    mon = TrackingMonitor(FR3.joint_names, p)
    q = FR3.home.copy()
    t, dt = 0.0, 1 / 64  # > TRACKING_CHECK_PERIOD_S, exact in binary
    for _ in range(20):  # following: no fault
        mon.record(t, q)
        assert mon.due(t, t) and mon.check(t, q + 0.05, t) is None
        t += dt
    off = q.copy()
    off[2] += 0.3
    reasons = []
    for _ in range(10):
        mon.record(t, q)
        reasons.append(mon.check(t, off, t))
        t += dt
    assert reasons[0] is None and any(r and FR3.joint_names[2] in r for r in reasons)
    assert mon.faults >= 1 and mon.error == pytest.approx(0.3)


def test_stop_planner_comes_to_rest_without_a_jump():
    p = ActionParams()
    sp = StopPlanner(FR3, p)
    q, qd = FR3.home.copy(), np.full(FR3.dof, 0.3)
    tr = sp.start_stop(1.0, q, qd, trajectory=True)
    assert sp.active and tr.kind == "stop" and np.all(tr.points[-1][2] == 0)
    assert np.max(np.abs(tr.points[0][1] - q)) < 0.05
    assert not sp.ended(1.0) and sp.ended(1.0 + tr.points[-1][0] + 1e-6)
    sp.reset()
    meas = FR3.home + 0.2
    tr = sp.start_glide(2.0, q, meas, trajectory=True)
    np.testing.assert_allclose(tr.points[-1][1], meas, atol=1e-6)
    target, ended = sp.target(2.0)
    np.testing.assert_allclose(target, q, atol=1e-9)
    assert not ended


def test_chunk_stream_hands_over_and_starts_each_trajectory_where_the_last_one_is(runtime):
    p = ActionParams()
    cs = ChunkStream(FR3, p, runtime.bundle.chunk_dt_s)
    q = FR3.home.copy()
    cs.reset(0.0, q, 1.0)
    h = runtime.bundle.chunk_length
    chunk = np.tile(np.append(q + 0.1, 1.0), (h, 1))
    res = cs.commit(cs.prepare(chunk, 0.0, 0.05), 0.0, 0.05)
    assert res.accepted and cs.pending
    tr, why = cs.trajectory(0.05)
    assert tr is not None and why == ""
    np.testing.assert_allclose(cs.commanded(0.05)[0], q, atol=1e-9)  # start of the trajectory
    mid = cs.commanded(0.3)[0]
    res = cs.commit(cs.prepare(chunk + 0.05, 0.25, 0.3), 0.25, 0.3)
    assert res.accepted
    tr2, _ = cs.trajectory(0.3)
    np.testing.assert_allclose(cs.sent[2][0], mid, atol=1e-9)  # no jump at the hand-over
    q_end, qd_end = interpolate(cs.sent, 100.0, FR3.dof)
    assert np.all(qd_end == 0) and cs.trajectories == 2
    late = cs.commit(cs.prepare(chunk, 0.0, 5.0), 0.0, 5.0)  # > max_chunk_delay_s
    assert not late.accepted


def test_position_stream_clamps_a_jump_to_the_limits():
    ps = PositionStream(FR3, ActionParams(command_mode="forward_position"))
    ps.reset(FR3.home)
    q1 = ps.command(FR3.home + 1.0).copy()  # a 1 rad step request
    dt = ActionParams(command_mode="forward_position").tick_period_s
    assert np.all(np.abs(q1 - FR3.home) <= FR3.limits.velocity * dt + 1e-9)
    assert ps.rejections >= 0 and ps.diagnostics()


# --- the virtual stack --------------------------------------------------------------------------
def run_stack(
    runtime,
    latency_ms=None,
    mode="joint_trajectory",
    seconds=2.0,
    instruction="pick the red cube",
    js_names=NAMES,
    js_pos=HOME,
):
    sp = StackParams(
        encoder=EncoderParams(require_camera_info=False),
        # the "arm" below stays put (open loop, as a replay): no tracking check
        action=ActionParams(command_mode=mode, enable_on_start=True, tracking_tolerance_rad=3.0),
    )
    stack = VirtualStack(FR3, runtime, sp, latency_ms=latency_ms)
    t0 = 100.0
    stack.start(t0)
    why = stack.on_instruction(instruction, t0)
    outs = []
    t = t0
    k = 0
    while t < t0 + seconds:
        if k % 4 == 0:  # 25 Hz camera, 100 Hz states
            stack.on_frame(image(seed=k), t, t)
        stack.on_joint_state(js_names, js_pos, t, t)
        outs += stack.advance_to(t)
        t += 0.01
        k += 1
    return stack, outs, why


def test_virtual_stack_runs_the_cores_into_commands_with_fixed_latency(runtime):
    stack, outs, why = run_stack(runtime, latency_ms=40.0)
    assert why is None and stack.state is State.RUN
    r = stack.record
    assert r.latents > 10 and r.plans > 3 and len(r.rf_chunks) > 3
    kinds = {o.kind for o in outs}
    assert TRAJECTORY in kinds and GRIPPER in kinds
    assert all(a.t <= b.t for a, b in zip(outs, outs[1:]))
    # fixed model latency: a frame's first command comes >= encode + act latency after it
    assert r.frame_to_command_s and min(r.frame_to_command_s) >= 0.08 - 1e-9
    d = stack.diagnostics(stack.now)
    assert d["stack"]["latency"] == "fixed 40 ms" and d["action"]["state"] == "run"
    assert d["planner"]["plans"] == r.plans


def test_virtual_stack_forward_mode_streams_positions_within_limits(runtime):
    stack, outs, _ = run_stack(runtime, latency_ms=10.0, mode="forward_position", seconds=1.0)
    arm = np.array([o.value for o in outs if o.kind == ARM])
    assert len(arm) > 200
    lim = FR3.limits
    assert np.all(arm >= lim.lower) and np.all(arm <= lim.upper)
    assert np.max(np.abs(np.diff(arm, axis=0))) <= np.max(lim.velocity) * 0.002 + 1e-9


def test_virtual_stack_refuses_an_empty_instruction_and_never_moves(runtime):
    stack, outs, why = run_stack(runtime, latency_ms=10.0, instruction="   ", seconds=0.5)
    assert why and "empty instruction" in why
    assert stack.record.plans == 0 and not [o for o in outs if o.kind != GRIPPER]
    assert stack.planner.counters["instructions_refused"] == 1


def test_virtual_stack_duplicate_joint_names_are_refused_not_measured(runtime):
    stack, outs, _ = run_stack(
        runtime, latency_ms=10.0, seconds=0.5, js_names=NAMES + NAMES, js_pos=HOME + HOME
    )
    assert stack.state is not State.RUN and outs == []
    d = stack.diagnostics(stack.now)["action"]
    assert d["joint_states_refused"] == 50 and "more than once" in d["joint_error"]
    assert stack.action.tracking_faults == 0
