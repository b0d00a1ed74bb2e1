"""TaylorSeerConfig: defaults, validation naming the field, presets, serialization."""

import dataclasses

import pytest

from taylorseer import TaylorSeerConfig


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("interval", 0),
        ("interval", 2.5),
        ("interval", True),
        ("order", -1),
        ("warmup", 0),
        ("final_full", -2),
        ("num_steps", 0),
        ("form", "lagrange"),
        ("abscissa", "sigma"),
        ("granularity", "layer"),
        ("factors_dtype", "int8"),
        ("full_steps", ()),
        ("full_steps", "0,1"),
        ("full_steps", (0, 1.5)),
        ("official_quirks", "yes"),
    ],
)
def test_bad_values_raise_naming_field_and_value(field, value):
    with pytest.raises(ValueError) as error:
        TaylorSeerConfig(**{field: value})
    assert field in str(error.value) and repr(value) in str(error.value)


def test_full_steps_outside_num_steps_raise():
    with pytest.raises(ValueError, match="full_steps holds 30"):
        TaylorSeerConfig(full_steps=(0, 30), num_steps=30)
    assert TaylorSeerConfig(full_steps=[0, -1], num_steps=30).full_steps == (0, -1)


def test_official_preset_is_the_papers_method():
    config = TaylorSeerConfig.official(interval=5, order=2, first_enhance=2)
    assert (config.form, config.abscissa, config.granularity) == ("taylor", "step", "module")
    assert (config.interval, config.order, config.effective_warmup, config.official_quirks) == (5, 2, 2, True)


def test_default_warmup_gives_the_first_forecast_its_full_order():
    assert TaylorSeerConfig(order=3).effective_warmup == 4
    assert TaylorSeerConfig(order=3, warmup=1).effective_warmup == 1


def test_json_round_trip(tmp_path):
    config = TaylorSeerConfig(full_steps=(0, 1, 7, -1), num_steps=20, factors_dtype="bfloat16")
    config.to_json(tmp_path / "schedule.json")
    assert TaylorSeerConfig.from_json(tmp_path / "schedule.json") == config
    (tmp_path / "bad.json").write_text('{"intervall": 3}')
    with pytest.raises(ValueError, match="intervall"):
        TaylorSeerConfig.from_json(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="missing.json"):
        TaylorSeerConfig.from_json(tmp_path / "missing.json")


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TaylorSeerConfig().order = 3
