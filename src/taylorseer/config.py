"""`TaylorSeerConfig`: every knob of the cache in one validated, serializable dataclass."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taylorseer.core.schedule import full_step_indices, spread, stretched

FORMS = ("newton", "taylor")
ABSCISSAE = ("step", "timestep")
GRANULARITIES = ("module", "block", "stack", "model")
SCHEDULES = ("spread", "fixed", "calibrated", "adaptive")
DEFAULT_ERROR_BUDGET = 0.1  # adaptive: largest relative error of the probe block's forecast
FACTOR_DTYPES = ("float32", "float16", "bfloat16", "float64")
SAMPLERS = ("flow", "diffusion")  # flow matching / rectified flow; DDPM-trained (DDIM, DPM-Solver)


@dataclass(frozen=True)
class Placement:
    """Where "spread" puts a run's full steps, for one kind of sampler.

    The first `leading` steps and the rest spread with `density` (`core.schedule.spread`); with
    `shapes` (reference placements as fractions of a run, each searched at one interval), the
    shape for the run's number of full steps stretched to the run's length and count instead
    (`core.schedule.stretched`). A count that is no shape's takes the nearest shape when
    `stretch_shapes`, else the spread. A config's `warmup` or `density`, when set, replaces the
    shape by `spread`, the other value taken from here.
    """

    leading: int
    density: float
    shapes: dict[int, tuple[float, ...]] = field(default_factory=dict, hash=False)  # interval -> shape
    stretch_shapes: bool = True  # False: a shape serves only its own interval's count of full steps

    def shape_for(self, num_steps: int, budget: int) -> tuple[float, ...] | None:
        """The shape searched at the interval whose paper count of full steps in a run of
        `num_steps` is nearest to `budget` (the first such interval on a tie); None without shapes,
        or when no count is `budget` and shapes are not stretched."""
        if not self.shapes:
            return None
        distance = {i: abs(paper_count(num_steps, i) - budget) for i in self.shapes}
        nearest = min(self.shapes, key=distance.__getitem__)
        if distance[nearest] and not self.stretch_shapes:
            return None
        return self.shapes[nearest]


def paper_count(num_steps: int, interval: int, warmup: int | None = None) -> int:
    """Full steps of the paper's schedule in a run of `num_steps` at `interval`, after `warmup`
    leading ones (default `BUDGET_WARMUP`): what "spread" places (12 of 50 at interval 5)."""
    return len(full_step_indices(num_steps, interval, BUDGET_WARMUP if warmup is None else warmup))


def _fractions(*steps: int) -> tuple[float, ...]:
    """A placement in a run of 50 steps as fractions of the run."""
    return tuple(step / 49 for step in steps)


BUDGET_WARMUP = 3  # "spread" runs as many full steps as the paper's rule with this warm-up
# Shapes: for an interval, its paper count of full steps at 50 steps as fractions of the run. Found
# by the search over a sampler kind's two choosing models at that interval, 28 and 50 steps
# (`python -m taylorseer.bench.shape_search`, docs/SHAPE-diffusion.md, docs/SHAPE-flow.md), and
# shipped where the held-out model of that kind scored it at least as high as the placement before.
# Diffusion (searched with full steps corrected in hindsight): a run takes the shape of the interval
# nearest to its count, stretched to that count. Flow matching (intervals 3 and 5 searched before
# the correction, 7 with it): each shape serves only its own interval's count; stretched to the
# counts between them they lost to the spread (docs/SCHEDULES.md). A sampler not known runs the
# diffusion shapes: the best worst case over the choosers of both kinds (docs/PLACEMENT.md).
DIFFUSION_SHAPES = {
    3: _fractions(0, 4, 6, 9, 13, 17, 22, 26, 30, 34, 37, 40, 42, 44, 46, 47, 48, 49),
    5: _fractions(0, 5, 14, 21, 27, 33, 37, 42, 44, 47, 48, 49),
    7: _fractions(0, 7, 17, 25, 32, 39, 44, 47, 48),
}
FLOW_SHAPES = {
    3: _fractions(0, 4, 8, 13, 17, 20, 23, 27, 30, 33, 36, 38, 41, 43, 45, 47, 48, 49),
    5: _fractions(0, 7, 13, 21, 27, 32, 37, 41, 44, 46, 48, 49),
    7: _fractions(0, 11, 21, 30, 37, 42, 46, 48, 49),
}
# `leading` and `density`: the `spread` of a count no shape serves and the one a config's `warmup`
# or `density` starts from, as ranked by `python -m taylorseer.bench.placement_sweep`
# (docs/PLACEMENT.md) on the worst case of each kind's choosing models (flow matching: flux-digits;
# diffusion: dit-digits and dit-narrow); None, a sampler not known: the best worst case over all
# three.
PLACEMENTS: dict[str | None, Placement] = {
    "flow": Placement(leading=1, density=1.75, shapes=FLOW_SHAPES, stretch_shapes=False),
    "diffusion": Placement(leading=2, density=1.5, shapes=DIFFUSION_SHAPES),
    None: Placement(leading=1, density=1.25, shapes=DIFFUSION_SHAPES),
}
# The default `term_ratio` for each kind of sampler, chosen with the placements before full steps
# were corrected (the best worst case of each kind's choosers; None: the best worst case over all);
# with the correction, docs/PLACEMENT.md has the ratios within 0.05 dB of each other.
TERM_RATIOS: dict[str | None, float] = {"flow": 1.0, "diffusion": 0.5, None: 0.5}

# The official TaylorSeer scripts' settings (interval N, max_order, first_enhance), per model family.
OFFICIAL_PRESETS: dict[str, dict[str, int]] = {
    "dit": dict(interval=4, order=4, first_enhance=2),  # DiT-XL/2, DDIM 50 (first_enhance hard-coded)
    "flux": dict(interval=6, order=1, first_enhance=3),  # FLUX.1-dev, 50 steps
    "hunyuan_video": dict(interval=5, order=1, first_enhance=1),
    "wan": dict(interval=5, order=1, first_enhance=1),  # Wan2.1 (cond and uncond cached separately)
    "hidream": dict(interval=4, order=2, first_enhance=1),
}


@dataclass(frozen=True)
class TaylorSeerConfig:
    """How features are cached and forecast between full-compute steps.

    Where the full steps go (`schedule`):
    - "spread" (the default): as many full steps as "fixed" would run at this `interval`, placed
      over the run as measured best for the `sampler` (`PLACEMENTS`), or as `warmup` leading steps
      and the rest spread to the last step with gaps shrinking toward the end as `density` grows
      (1 = even). It needs the run's
      length (a pipeline gives it; else `num_steps` or `handle.run(num_steps=...)`); without
      it the run falls back to "fixed", with a warning;
    - "fixed": the paper's: the first `warmup` steps, then every `interval`-th step, then the
      last `final_full`;
    - "calibrated": the explicit list `full_steps` (e.g. written by `taylorseer calibrate`);
    - "adaptive": the first `warmup` steps, then on each forecast step the first block runs for
      real as a probe, and the step runs in full when the probe's forecast is off by more than
      `error_budget` (relative L2), or after `interval` - 1 forecast steps in a row.
    """

    interval: int = 5  # N: after warm-up, one full step every N steps (1 = never forecast)
    order: int = 2  # expansion order; 0 = plain reuse of the last full step (FORA)
    warmup: int | None = None  # leading full steps (first_enhance); None -> by sampler ("fixed": order + 1)
    final_full: int = 0  # force the last k steps full (needs num_steps or a pipeline)
    full_steps: tuple[int, ...] | None = None  # explicit full-step indices; negatives count from the end
    num_steps: int | None = None  # sampling steps per run, when the caller knows them
    schedule: str | None = None  # "spread" | "fixed" | "calibrated" | "adaptive"; None -> by full_steps
    density: float | None = None  # "spread" only: > 1 crowds full steps toward the end; None -> by sampler
    # "flow" | "diffusion": picks the "spread" placement (PLACEMENTS); None -> filled in by
    # apply_taylorseer from the pipeline's scheduler or the model's class
    sampler: str | None = None
    error_budget: float | None = None  # adaptive only; None -> DEFAULT_ERROR_BUDGET
    form: str = "newton"  # "newton": divided differences on the real grid; "taylor": the paper's
    # a derivative is used only up to gap_ratio times the span it was measured over; None = always
    gap_ratio: float | None = 2.0
    # a term of order >= 2 is used only while its norm is at most term_ratio times the previous
    # term's (the expansion still converges there); None = always; "auto" = by sampler (TERM_RATIOS)
    term_ratio: float | str | None = "auto"
    abscissa: str = "step"  # forecast variable: "step" index or the model's "timestep" input
    granularity: str = "model"  # what is forecast: "module" | "block" | "stack" | "model"
    factors_dtype: str | None = None  # storage dtype of the factors; None = the feature's dtype
    official_quirks: bool = False  # official code: no derivatives before step warmup - 1
    # correct each full step for the forecasts before it (core.hindsight); None = where it applies:
    # granularity "model", a model class whose timestep is its noise level, a sampler of known
    # kind, and a pipeline's scheduler FlowMatch Euler or DDIM (api.pipelines.hindsight_for)
    correction: bool | None = None
    memory_budget: int | None = None  # bytes of cached factors; over it -> a leaner granularity
    # "calibrated" only: what the schedule was calibrated for ("model", "model_class", "scheduler",
    # "num_steps"); applying it to another model or scheduler warns
    calibrated_for: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        _require_int("interval", self.interval, minimum=1)
        _require_int("order", self.order, minimum=0)
        if self.sampler is not None:
            _require_choice("sampler", self.sampler, SAMPLERS)
        if self.warmup is not None:
            _require_int("warmup", self.warmup, minimum=1)
        _require_int("final_full", self.final_full, minimum=0)
        if self.num_steps is not None:
            _require_int("num_steps", self.num_steps, minimum=1)
        _require_choice("form", self.form, FORMS)
        _require_choice("abscissa", self.abscissa, ABSCISSAE)
        _require_choice("granularity", self.granularity, GRANULARITIES)
        if self.factors_dtype is not None:
            _require_choice("factors_dtype", self.factors_dtype, FACTOR_DTYPES)
        if self.memory_budget is not None:
            _require_int("memory_budget", self.memory_budget, minimum=1)
        if not isinstance(self.official_quirks, bool):
            raise ValueError(f"official_quirks must be a bool, got {self.official_quirks!r}")
        if not (self.correction is None or isinstance(self.correction, bool)):
            raise ValueError(f"correction must be True, False or None, got {self.correction!r}")
        if self.correction and (self.granularity != "model" or self.official_quirks):
            raise ValueError(
                "correction=True corrects the model's output: it needs granularity='model' and no "
                f"official_quirks, got granularity={self.granularity!r}, "
                f"official_quirks={self.official_quirks}"
            )
        if self.full_steps is not None:
            self._validate_full_steps()
        self._validate_schedule()

    def _validate_full_steps(self) -> None:
        steps = self.full_steps
        if isinstance(steps, (str, bytes)) or not isinstance(steps, (tuple, list)):
            raise ValueError(f"full_steps must be a tuple of step indices, got {steps!r}")
        if len(steps) == 0:
            raise ValueError("full_steps must name at least one step, got ()")
        for step in steps:
            if isinstance(step, bool) or not isinstance(step, int):
                raise ValueError(f"full_steps must hold integers, got {step!r} in {steps!r}")
            if self.num_steps is not None and not -self.num_steps <= step < self.num_steps:
                raise ValueError(f"full_steps holds {step}, outside the {self.num_steps} steps of num_steps")
        object.__setattr__(self, "full_steps", tuple(steps))

    def _validate_schedule(self) -> None:
        if self.schedule is None:
            object.__setattr__(self, "schedule", "spread" if self.full_steps is None else "calibrated")
        _require_choice("schedule", self.schedule, SCHEDULES)
        if (self.schedule == "calibrated") != (self.full_steps is not None):
            raise ValueError(
                f"schedule={self.schedule!r} with full_steps={self.full_steps!r}: the explicit full_steps "
                "list is the 'calibrated' schedule, and only it"
            )
        if self.density is not None:
            if self.schedule != "spread":
                raise ValueError(f"density={self.density!r} needs schedule='spread', got {self.schedule!r}")
            density = self.density
            if isinstance(density, bool) or not isinstance(density, (int, float)) or not 1 <= density < 100:
                raise ValueError(f"density must be a number from 1 (even) up, got {density!r}")
        if self.gap_ratio is not None:
            _require_positive("gap_ratio", self.gap_ratio)
        if not (self.term_ratio is None or isinstance(self.term_ratio, str) and self.term_ratio == "auto"):
            _require_positive("term_ratio", self.term_ratio, also='"auto", None or ')
        if self.calibrated_for is not None:
            if self.schedule != "calibrated":
                raise ValueError(f"calibrated_for={self.calibrated_for!r} needs schedule='calibrated'")
            if not isinstance(self.calibrated_for, dict) or not all(
                isinstance(k, str) for k in self.calibrated_for
            ):
                raise ValueError(
                    f"calibrated_for must be a dict with string keys, got {self.calibrated_for!r}"
                )
        if self.error_budget is not None:
            if self.schedule != "adaptive":
                raise ValueError(f"error_budget={self.error_budget!r} needs schedule='adaptive'")
            budget = self.error_budget
            if (
                isinstance(budget, bool)
                or not isinstance(budget, (int, float))
                or not 0 < budget < float("inf")
            ):
                raise ValueError(f"error_budget must be a number > 0, got {budget!r}")

    @property
    def effective_error_budget(self) -> float:
        return DEFAULT_ERROR_BUDGET if self.error_budget is None else float(self.error_budget)

    def full_step_budget(self, num_steps: int) -> int:
        """Full steps of the "spread" schedule in a run of `num_steps`: as many as the paper's rule
        runs at this `interval` with warm-up `warmup` (default 3): 12 of 50 at interval 5."""
        return paper_count(num_steps, self.interval, self.warmup)

    def planned_full_steps(self, num_steps: int) -> list[int]:
        """The full steps of a run of `num_steps` under this "spread", "fixed" or "calibrated" schedule
        (with `final_full`); "adaptive" decides while sampling."""
        if self.schedule == "adaptive":
            raise ValueError("schedule='adaptive' decides its full steps while sampling")
        if self.schedule == "spread":
            return sorted(
                set(self.spread_placement(num_steps)) | set(range(num_steps - self.final_full, num_steps))
            )
        return full_step_indices(
            num_steps, self.interval, self.effective_warmup, self.final_full, self.full_steps
        )

    def spread_placement(self, num_steps: int, budget: int | None = None) -> list[int]:
        """The "spread" schedule's full steps (`budget` of them, default `full_step_budget`)."""
        budget = self.full_step_budget(num_steps) if budget is None else budget
        placement = PLACEMENTS[self.sampler]
        shape = placement.shape_for(num_steps, budget)
        if shape is not None and self.warmup is None and self.density is None:
            return stretched(num_steps, budget, shape)
        leading = placement.leading if self.warmup is None else self.warmup
        density = placement.density if self.density is None else float(self.density)
        return spread(num_steps, budget, min(leading, budget), density)

    @property
    def effective_term_ratio(self) -> float | None:
        """`term_ratio`, with "auto" resolved by `sampler` (`TERM_RATIOS`)."""
        return TERM_RATIOS[self.sampler] if self.term_ratio == "auto" else self.term_ratio

    @property
    def effective_warmup(self) -> int:
        """Leading full steps of "fixed": `warmup`, or order + 1 so the first forecast has its
        full order."""
        return self.order + 1 if self.warmup is None else self.warmup

    @property
    def needs_num_steps(self) -> bool:
        """Whether the schedule refers to the end of the run and so needs the step count."""
        negative = self.full_steps is not None and any(s < 0 for s in self.full_steps)
        return negative or (self.full_steps is None and self.final_full > 0)

    @classmethod
    def official(
        cls,
        family: str | None = None,
        *,
        interval: int | None = None,
        order: int | None = None,
        first_enhance: int | None = None,
    ) -> TaylorSeerConfig:
        """The paper's method as the official code runs it: per-module Taylor on step indices.

        `family` ("dit", "flux", "hunyuan_video", "wan", "hidream") takes that official script's
        interval, order and first_enhance (`OFFICIAL_PRESETS`); keywords override them. Without a
        family all three must be given.
        """
        if family is not None and family not in OFFICIAL_PRESETS:
            raise ValueError(f"family must be one of {', '.join(OFFICIAL_PRESETS)}; got {family!r}")
        preset = OFFICIAL_PRESETS.get(family, {})
        given = dict(interval=interval, order=order, first_enhance=first_enhance)
        chosen = {name: preset.get(name) if value is None else value for name, value in given.items()}
        missing = [name for name, value in chosen.items() if value is None]
        if missing:
            raise ValueError(
                f"official() needs a family ({', '.join(OFFICIAL_PRESETS)}) or all of interval, order and "
                f"first_enhance; missing {', '.join(missing)}"
            )
        return cls(
            interval=chosen["interval"],
            order=chosen["order"],
            warmup=chosen["first_enhance"],
            form="taylor",
            abscissa="step",
            granularity="module",
            official_quirks=True,
            gap_ratio=None,
            term_ratio=None,
            schedule="fixed",
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.full_steps is not None:
            data["full_steps"] = list(self.full_steps)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaylorSeerConfig:
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TaylorSeerConfig fields: {sorted(unknown)}")
        data = dict(data)
        if data.get("full_steps") is not None:
            data["full_steps"] = tuple(data["full_steps"])
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> TaylorSeerConfig:
        """Load a config (e.g. a calibrated schedule) written by `to_json`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read a TaylorSeerConfig from {str(path)!r}: {error}") from error
        if not isinstance(data, dict):
            raise ValueError(f"{str(path)!r} must hold a JSON object, got {type(data).__name__}")
        return cls.from_dict(data)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _require_positive(name: str, value: object, also: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"{name} must be {also}a number > 0, got {value!r}")


def _require_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
