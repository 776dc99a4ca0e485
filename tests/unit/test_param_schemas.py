"""The node parameter schemas (clap_ros.runtime.params): every parameter declared once with a
description, unit and range; bad values refused naming the parameter and its range; the shipped
config files valid against them; and no second copy of a default in the evaluators."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from clap_ros.runtime.params import (
    NODE_SCHEMAS,
    ActionParams,
    EncoderParams,
    Param,
    ParamError,
    PlannerParams,
    Schema,
    check_params_file,
    param,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("schema", list(NODE_SCHEMAS.values()), ids=list(NODE_SCHEMAS))
def test_every_parameter_is_described_typed_and_its_default_is_allowed(schema):
    specs = schema.specs()
    assert len(specs) == len(dataclasses.fields(schema)) and len(specs) >= 9
    assert len({p.name for p in specs}) == len(specs)
    for p in specs:
        assert p.description and len(p.description) > 8, p.name
        assert p.kind in (bool, int, float, str)
        assert p.check(p.default) == p.default  # the default passes its own range
        if p.kind is float and p.name.endswith("_s"):
            assert p.unit == "s", p.name
        if p.kind is float and p.name.endswith("_hz"):
            assert p.unit == "Hz", p.name
    schema().validate()


def test_a_bad_value_is_refused_naming_the_parameter_and_its_range():
    with pytest.raises(
        ParamError,
        match=r"parameter 'watchdog_latent_s' = 100.0: out of range, "
        r"allowed 0.001 .. 60 s",
    ):
        ActionParams.from_mapping({"watchdog_latent_s": 100.0})
    with pytest.raises(
        ParamError,
        match=r"'command_mode' = 'velocity': must be one of: "
        r"joint_trajectory, forward_position",
    ):
        ActionParams(command_mode="velocity").validate()
    with pytest.raises(ParamError, match=r"'threads' = 1.5: must be an integer"):
        EncoderParams.from_mapping({"threads": 1.5})
    with pytest.raises(ParamError, match=r"'require_camera_info' = 'yes': must be a boolean"):
        EncoderParams.from_mapping({"require_camera_info": "yes"})
    with pytest.raises(ParamError, match="planner_rate_hz.*nan"):
        PlannerParams.from_mapping({"planner_rate_hz": float("nan")})
    with pytest.raises(ParamError, match="trajectory_horizon_s.*trajectory_point_period_s"):
        ActionParams.from_mapping({"trajectory_horizon_s": 0.1, "trajectory_point_period_s": 0.5})


def test_unknown_names_are_refused_and_old_names_are_gone():
    # one name per parameter: the node's (margin / max_delay_s were the controller's old names)
    for old in ("margin", "max_delay_s", "trajectory_period_s", "thresholds"):
        with pytest.raises(ParamError, match="unknown parameter"):
            ActionParams.from_mapping({old: 0.1})
    assert ActionParams.from_mapping({"use_sim_time": True}) == ActionParams()


def test_numbers_are_normalised_and_replace_validates():
    p = PlannerParams.from_mapping({"planner_rate_hz": 15})
    assert p.planner_rate_hz == 15.0 and isinstance(p.planner_rate_hz, float)
    a = ActionParams().replace(command_mode="forward_position", command_rate_hz=250)
    assert a.tick_period_s == pytest.approx(1 / 250)
    assert a.thresholds == {"latent": 0.5, "plan": 1.0, "joint_states": 0.2}
    assert a.overrides() == {"command_mode": "forward_position", "command_rate_hz": 250.0}
    with pytest.raises(ParamError, match="position_margin"):
        a.replace(position_margin=-1.0)


def test_generic_machinery_for_another_schema():
    @dataclasses.dataclass
    class Demo(Schema):
        rate_hz: float = param(10.0, "how often", "Hz", low=1.0, high=100.0)
        name: str = param("a", "which one", choices=("a", "b"))

    assert [p.name for p in Demo.specs()] == ["rate_hz", "name"]
    assert Demo.spec("rate_hz") == Param("rate_hz", 10.0, "how often", "Hz", 1.0, 100.0)
    assert "1 .. 100 Hz" in Demo.spec("rate_hz").describe()
    assert "| `rate_hz` |" in Demo.markdown_table()
    assert check_params_file({"demo": {"ros__parameters": {"rate_hz": 500.0}}}, {"demo": Demo}) == [
        "demo: parameter 'rate_hz' = 500.0: out of range, allowed 1 .. 100 Hz"
    ]


def test_config_files_are_valid_against_the_schemas():
    files = sorted((ROOT / "config").glob("*.yaml"))
    assert ROOT / "config" / "clap_nodes.yaml" in files
    checked = 0
    for f in files:
        data = yaml.safe_load(f.read_text())
        assert check_params_file(data) == [], f
        checked += sum(1 for node in (data or {}) if node in NODE_SCHEMAS)
    assert checked >= 3
    # and the shipped config states the schema defaults (a second, different default would be a
    # second source of truth)
    data = yaml.safe_load((ROOT / "config" / "clap_nodes.yaml").read_text())
    for node, schema in NODE_SCHEMAS.items():
        for k, v in data[node]["ros__parameters"].items():
            if k in ("robot", "use_sim_time"):
                continue
            assert schema.spec(k).check(v) == schema.spec(k).default, (node, k, v)


def test_a_broken_config_is_reported():
    data = {
        "action_node": {"ros__parameters": {"position_margin": 0.9, "margin": 0.1}},
        "planner_node": {"ros__parameters": {"planner_rate_hz": 0.0}},
        "someone_else": {"ros__parameters": {"anything": 1}},
    }
    problems = check_params_file(data)
    assert len(problems) == 2
    assert "unknown parameter(s) margin" in problems[0]
    assert "planner_rate_hz" in problems[1] and "0.1 .. 100 Hz" in problems[1]


def test_evaluator_defaults_come_from_the_schemas():
    from types import SimpleNamespace

    from clap_ros.eval.bag_data import BagEvalConfig, stack_params
    from clap_ros.robots import load_profile

    cfg = BagEvalConfig(bags=["x"], out="y")
    data = SimpleNamespace(has_camera_info=True, arm_kind="traj")
    sp = stack_params(cfg, data, load_profile("fr3"))
    assert sp.planner.planner_rate_hz == PlannerParams().planner_rate_hz
    assert sp.action.watchdog_latent_s == ActionParams().watchdog_latent_s
    assert (
        sp.action.enable_on_start
        and sp.action.tracking_tolerance_rad == ActionParams.spec("tracking_tolerance_rad").high
        and sp.action.interpolate_from_desired_state  # open loop: the arm is the operator's
    )
    assert sp.encoder.require_camera_info


def test_launch_argument_defaults_agree_with_the_schemas():
    # bringup's launch arguments feed node parameters; a default there that differed from the
    # schema's would be a second source of truth
    from clap_ros.launching.graph import BRINGUP, Arg

    coerce = {bool: lambda s: str(s).lower() == "true", int: int, float: float, str: str}
    checked = 0
    for spec in BRINGUP.nodes:
        schema = NODE_SCHEMAS.get(spec.name)
        if schema is None:
            continue
        for key, value in spec.parameters.items():
            if not isinstance(value, Arg) or key == "use_sim_time":
                continue
            p = schema.spec(key)
            default = BRINGUP.argument(value.name).default
            assert coerce[p.kind](default) == p.default, (spec.name, key, default, p.default)
            checked += 1
    assert checked >= 10
