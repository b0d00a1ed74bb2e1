"""TaylorSeerConfig: defaults, validation naming the field, presets, serialization."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taylorseer import TaylorSeerConfig
from taylorseer.config import (
    ABSCISSAE,
    DEFAULT_ERROR_BUDGET,
    FACTOR_DTYPES,
    FORMS,
    GRANULARITIES,
    SAMPLERS,
    SCHEDULES,
    TERM_RATIOS,
)

pytestmark = pytest.mark.unit


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


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("dit", (4, 4, 2)),
        ("flux", (6, 1, 3)),
        ("hunyuan_video", (5, 1, 1)),
        ("wan", (5, 1, 1)),
        ("hidream", (4, 2, 1)),
    ],
)
def test_official_presets_carry_each_official_scripts_settings(family, expected):
    config = TaylorSeerConfig.official(family)
    assert (config.interval, config.order, config.effective_warmup) == expected
    assert TaylorSeerConfig.official(family, interval=7).interval == 7  # a keyword overrides the preset


def test_official_without_a_family_needs_every_setting():
    with pytest.raises(ValueError, match="missing first_enhance"):
        TaylorSeerConfig.official(interval=4, order=2)  # no silent first_enhance=1 for DiT users
    with pytest.raises(ValueError, match="family must be one of.*'sd3'"):
        TaylorSeerConfig.official("sd3")


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


ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(-3, 60), st.floats(-2, 60), st.text(max_size=8))
FIELD_VALUES = {
    "interval": st.one_of(st.integers(-2, 12), ANYTHING),
    "order": st.one_of(st.integers(-2, 6), ANYTHING),
    "warmup": st.one_of(st.none(), st.integers(-2, 6), ANYTHING),
    "final_full": st.one_of(st.integers(-2, 6), ANYTHING),
    "num_steps": st.one_of(st.none(), st.integers(-2, 60), ANYTHING),
    "full_steps": st.one_of(st.none(), st.lists(st.integers(-60, 60), max_size=6).map(tuple), ANYTHING),
    "form": st.one_of(st.sampled_from(FORMS), ANYTHING),
    "abscissa": st.one_of(st.sampled_from(ABSCISSAE), ANYTHING),
    "granularity": st.one_of(st.sampled_from(GRANULARITIES), ANYTHING),
    "factors_dtype": st.one_of(st.none(), st.sampled_from(FACTOR_DTYPES), ANYTHING),
    "official_quirks": st.one_of(st.booleans(), ANYTHING),
    "correction": st.one_of(st.none(), st.booleans(), ANYTHING),
    "memory_budget": st.one_of(st.none(), st.integers(-2, 10**9), ANYTHING),
    "schedule": st.one_of(st.none(), st.sampled_from(SCHEDULES), ANYTHING),
    "error_budget": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), ANYTHING),
    "gap_ratio": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), ANYTHING),
    "term_ratio": st.one_of(
        st.none(), st.just("auto"), st.floats(allow_nan=True, allow_infinity=True), ANYTHING
    ),
    "density": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), ANYTHING),
    "sampler": st.one_of(st.none(), st.sampled_from(SAMPLERS), ANYTHING),
    "calibrated_for": st.one_of(
        st.none(), st.dictionaries(st.text(max_size=5), ANYTHING, max_size=2), ANYTHING
    ),
}


def test_the_property_test_covers_every_field():
    assert set(FIELD_VALUES) == {field.name for field in dataclasses.fields(TaylorSeerConfig)}


def test_schedule_kind_follows_full_steps_and_error_budget_needs_adaptive():
    assert TaylorSeerConfig().schedule == "spread"
    assert TaylorSeerConfig(full_steps=(0, 3)).schedule == "calibrated"
    with pytest.raises(ValueError, match="density=2.0 needs schedule='spread', got 'fixed'"):
        TaylorSeerConfig(schedule="fixed", density=2.0)
    with pytest.raises(ValueError, match="density must be a number from 1"):
        TaylorSeerConfig(density=0.5)
    with pytest.raises(ValueError, match="schedule='adaptive' with full_steps=\\(0, 3\\)"):
        TaylorSeerConfig(schedule="adaptive", full_steps=(0, 3))
    with pytest.raises(ValueError, match="schedule='calibrated' with full_steps=None"):
        TaylorSeerConfig(schedule="calibrated")
    with pytest.raises(ValueError, match="error_budget=0.1 needs schedule='adaptive'"):
        TaylorSeerConfig(error_budget=0.1)
    assert TaylorSeerConfig(schedule="adaptive").effective_error_budget == DEFAULT_ERROR_BUDGET


def test_term_ratio_auto_follows_the_sampler_and_official_keeps_every_term():
    assert TaylorSeerConfig().term_ratio == "auto"
    assert TaylorSeerConfig(sampler="flow").effective_term_ratio == TERM_RATIOS["flow"]
    assert TaylorSeerConfig(sampler="diffusion").effective_term_ratio == TERM_RATIOS["diffusion"]
    assert TaylorSeerConfig().effective_term_ratio == TERM_RATIOS[None]
    assert TaylorSeerConfig(sampler="flow", term_ratio=0.7).effective_term_ratio == 0.7
    assert TaylorSeerConfig(term_ratio=None).effective_term_ratio is None
    assert TaylorSeerConfig.official("flux").effective_term_ratio is None
    with pytest.raises(ValueError, match="term_ratio must be \"auto\", None or a number > 0, got 'Auto'"):
        TaylorSeerConfig(term_ratio="Auto")


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({}, optional=FIELD_VALUES))
def test_every_combination_validates_or_names_the_bad_field(fields):
    try:
        config = TaylorSeerConfig(**fields)
    except ValueError as error:
        assert any(name in str(error) for name in fields), str(error)
        return
    assert TaylorSeerConfig.from_dict(config.to_dict()) == config  # what validates round-trips
