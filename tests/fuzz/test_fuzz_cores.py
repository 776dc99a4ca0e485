"""Fuzzed inputs through the ROS-free cores the nodes run (clap_ros.runtime) and the tokenizer:
instructions of any shape (empty, whitespace, control characters, non-ASCII, 100k characters),
latents of any shape and content, joint states, camera images. Each input is used or refused with
a counted, short reason; a plan is never made from a refused input or from an instruction without
a single word."""

import math

import numpy as np
import pytest
from fuzz_support import (
    FR3,
    MAX_TEXT,
    fuzz_settings,
    has_words,
    image_fields,
    image_ns,
    instructions,
    joint_state_verdict,
    joint_states,
    latent_fields,
    well_formed,
)
from hypothesis import given, strategies as st

from clap_ros.inference.tokenizer import TokenizerError, normalize
from clap_ros.runtime.encoder_core import EncoderCore
from clap_ros.runtime.params import EncoderParams, PlannerParams
from clap_ros.runtime.planner_core import PlannerCore

NAMES = list(FR3.joint_names) + list(FR3.gripper.joint_names)


@pytest.fixture(scope="module")
def runtime():
    from clap_ros.inference.policy import ClapRuntime

    rt = ClapRuntime("models/default", backend="cpu")
    yield rt
    rt.close()


# --- tokenizer / ClapRuntime.instruction_ids ------------------------------------------------------
@fuzz_settings(200)
@given(instructions())
def test_instruction_ids_are_in_the_vocabulary_for_any_text(runtime, text):
    ids, mask = runtime.instruction_ids(text)
    tok = runtime.tokenizer
    assert ids.shape == mask.shape == (1, tok.max_length) and ids.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < tok.vocab_size
    assert set(np.unique(mask)) <= {0, 1} and mask[0, 0] == 1
    assert np.all(ids[mask == 0] == tok.pad_id)
    n_words = len(normalize(text))
    assert int(mask.sum()) == max(1, min(n_words, tok.max_length))


@fuzz_settings(30)
@given(st.sampled_from([None, 3, 2.5, b"put the cube", ["put"], {"a": 1}]))
def test_tokenizer_refuses_what_is_not_text(runtime, value):
    with pytest.raises(TokenizerError):
        runtime.tokenizer.encode(value)


# --- planner core ----------
def _planner(runtime, **kw):
    return PlannerCore(runtime, FR3, PlannerParams(**kw))


def _feed(core, t):
    lat = (
        np.random.default_rng(int(t * 1000))
        .standard_normal((core.runtime.bundle.latent_tokens, core.runtime.bundle.latent_dim))
        .astype(np.float32)
    )
    assert core.on_latent(lat, t, t) is None
    assert core.on_joint_state(NAMES, list(FR3.home) + [0.04, 0.04], t, t) is None


@fuzz_settings(150)
@given(st.lists(instructions(), min_size=1, max_size=4))
def test_planner_core_plans_only_with_an_instruction_that_has_words(runtime, texts):
    core = _planner(runtime)
    accepted = None
    t = 10.0
    for text in texts:
        refused = core.counters["instructions_refused"]
        why = core.set_instruction(text, t)
        if why is None:
            assert has_words(text), (
                "instruction %r (no word the tokenizer sees) accepted" % text[:80]
            )
            assert len(text.strip()) <= core.params.max_instruction_chars
            accepted = text.strip()
            assert core.instruction == accepted
        else:
            assert len(why) < MAX_TEXT, "refusal of %d characters" % len(why)
            assert core.counters["instructions_refused"] == refused + 1
            assert core.instruction == (accepted or "")  # the last good one stays
        _feed(core, t)
        step = core.step(t)
        assert len(step.reason) < MAX_TEXT and len(step.note) < MAX_TEXT
        if step.plan is not None:
            assert accepted is not None and core.instruction == accepted
            assert np.all(np.isfinite(step.plan.targets))
        else:
            assert accepted is None or step.reason == "" or "planner" in step.reason
        t += 0.2
    d = core.diagnostics()
    assert all(len(str(v)) < MAX_TEXT for v in d.values()), d


def test_a_100k_instruction_is_refused_and_never_quoted_whole(runtime):
    core = _planner(runtime)
    assert core.set_instruction("put the red cube in the bowl", 0.0) is None
    why = core.set_instruction("cube " * 20_000, 1.0)
    assert why is not None and len(why) < MAX_TEXT
    assert core.instruction == "put the red cube in the bowl"
    for text in ("", "   ", "\n\t"):
        assert core.set_instruction(text, 2.0) is not None
    assert core.counters["instructions_refused"] == 4


@fuzz_settings(150)
@given(st.data())
def test_planner_core_latents_and_joint_states_are_used_or_refused(runtime, data):
    core = _planner(runtime, instruction="put the red cube in the bowl")
    b = runtime.bundle
    t = 10.0
    _feed(core, t)
    assert core.step(t).plan is not None
    for _ in range(data.draw(st.integers(1, 4))):
        t += 0.2
        if data.draw(st.booleans()):
            fields = data.draw(latent_fields(b.latent_tokens, b.latent_dim))
            refused = core.counters["latents_refused"]
            why = core.on_latent(image_ns(fields), t, t)
            if why is not None:
                assert len(why) < MAX_TEXT and core.counters["latents_refused"] == refused + 1
            else:
                assert fields["encoding"] == "32FC1"
                assert (fields["height"], fields["width"]) == (b.latent_tokens, b.latent_dim)
        else:
            names, pos, _ = data.draw(joint_states(FR3))
            refused = core.counters["joint_states_refused"]
            why = core.on_joint_state(names, pos, t, t)
            verdict = joint_state_verdict(FR3, names, pos)
            if why is not None:
                assert len(why) < MAX_TEXT and verdict != "accept", (why, names, pos)
                assert core.counters["joint_states_refused"] == refused + 1
            else:
                assert verdict != "refuse", (names, pos)
        step = core.step(t)
        if step.plan is not None:
            assert np.all(np.isfinite(step.plan.targets)) and np.all(np.isfinite(step.plan.indices))
            assert step.plan.targets.shape[1] == FR3.dof + 1


@fuzz_settings(60)
@given(
    st.lists(
        st.one_of(
            st.just([]),
            st.lists(
                st.sampled_from([math.nan, math.inf, -1.0, 0.5, 2.0, 1e308]), min_size=1, max_size=3
            ),
        ),
        max_size=5,
    )
)
def test_planner_core_gripper_commands_stay_in_range(runtime, cmds):
    core = _planner(runtime, instruction="put the red cube in the bowl")
    for c in cmds:
        core.on_gripper_command(c)
    assert core._gripper_cmd is None or 0.0 <= core._gripper_cmd <= 1.0


# --- encoder core ----------
@fuzz_settings(200)
@given(image_fields(max_side=40))
def test_encoder_core_encodes_or_refuses_any_image(runtime, fields):
    core = EncoderCore(runtime, EncoderParams(require_camera_info=False))
    res = core.encode(image_ns(fields), 1.0, 1.0)
    if res.ok:
        assert fields["encoding"] in ("rgb8", "bgr8", "mono8") and well_formed(fields)
        assert res.latent.shape == (runtime.bundle.latent_tokens, runtime.bundle.latent_dim)
        assert np.all(np.isfinite(res.latent))
        assert core.counters["latents"] == 1
    else:
        assert res.refused and res.reason and len(res.reason) < MAX_TEXT
        assert core.counters[res.refused] == 1
        assert core.diagnostics()["last_refusal"] == res.reason
    assert core.counters["frames_in"] == 1


@fuzz_settings(60)
@given(
    st.fixed_dictionaries(
        {
            "width": st.sampled_from([0, 64, 2**31]),
            "height": st.sampled_from([0, 64, 7]),
            "k": st.one_of(
                st.lists(st.floats(allow_nan=True), min_size=9, max_size=9),
                st.lists(st.floats(-100, 100), max_size=12),
            ),
            "d": st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=8),
        }
    )
)
def test_encoder_core_camera_info_is_taken_or_refused(runtime, info):
    from types import SimpleNamespace

    core = EncoderCore(runtime, EncoderParams(require_camera_info=True))
    why = core.set_camera_info(SimpleNamespace(**info))
    if why is None:
        assert core.calibrated
        for shape in (
            (info["height"], info["width"] if info["width"] < 1000 else 1, 3),
            (64, 64, 3),
        ):
            res = core.encode(np.zeros(shape, np.uint8), 1.0, 1.0)
            assert res.ok or (res.refused and res.reason and len(res.reason) < MAX_TEXT)
    else:
        assert not core.calibrated and core.counters["camera_info_refused"] == 1
        assert len(why) < MAX_TEXT


@fuzz_settings(100)
@given(
    st.lists(st.integers(0, 70), min_size=0, max_size=3),
    st.sampled_from([np.uint8, np.float32, np.float64, np.int16, bool]),
    st.sampled_from([0.0, 0.5, math.nan, math.inf]),
)
def test_encoder_core_refuses_arrays_that_are_not_rgb_frames(runtime, shape, dtype, fill):
    core = EncoderCore(runtime, EncoderParams(require_camera_info=False))
    with np.errstate(invalid="ignore"):
        arr = np.full(shape, fill).astype(dtype)
    res = core.encode(arr, 1.0, 1.0)
    if res.ok:
        assert np.all(np.isfinite(res.latent))
        b = runtime.bundle
        assert (
            dtype is np.uint8 and len(shape) == 3 and shape[2] == 3 and min(shape[:2]) >= 1
        ) or (
            dtype is not np.uint8
            and tuple(shape[-3:]) == (3, b.image_height, b.image_width)
            and math.isfinite(fill)
        )
    else:
        assert res.refused and res.reason and len(res.reason) < MAX_TEXT


@fuzz_settings(250)
@given(latent_fields(16, 64))
def test_latent_from_image_decodes_exactly_or_refuses(fields):
    """/clap/latent (32FC1) of any shape, step, length, byte order and content: the bundle's
    [16, 64] finite latent exactly, or an InputError that says why."""
    from clap_ros.nodes.clap_logic import InputError, latent_from_image

    msg = image_ns(fields)
    raw = bytes(fields["data"])
    try:
        lat = latent_from_image(msg, 16, 64)
    except InputError as e:
        assert str(e) and len(str(e)) < MAX_TEXT
        ok = (
            fields["encoding"] == "32FC1"
            and (fields["height"], fields["width"]) == (16, 64)
            and fields["step"] >= 256
            and len(raw) >= fields["step"] * 16
        )
        if ok:  # the only remaining reason: a non-finite value
            assert "non-finite" in str(e)
        return
    assert lat.shape == (16, 64) and lat.dtype == np.float32 and np.all(np.isfinite(lat))
    dt = ">f4" if fields["is_bigendian"] else "<f4"
    want = np.stack(
        [
            np.frombuffer(raw[r * fields["step"] : r * fields["step"] + 256], dtype=dt)
            for r in range(16)
        ]
    )
    np.testing.assert_array_equal(lat, want)
