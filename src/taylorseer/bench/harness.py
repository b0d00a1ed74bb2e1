"""`taylorseer bench`: every method on one model and one set of seeds, in one process.

Each row samples the same noise and labels; fidelity is measured against the full-compute
row of the same run, speed as ratios to it. Methods are data (`Method`); what varies between
models is a `Subject`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from taylorseer.api import apply_taylorseer
from taylorseer.bench.metrics import psnr, relative_l2, ssim
from taylorseer.config import TaylorSeerConfig
from taylorseer.wiring.forwards import wrap_forward

STEPS = 50


@dataclass
class Subject:
    """A model under test: its transformer and a sampler of its fixed noise and labels."""

    name: str
    family: str  # "dit" | "flux": picks the paper's defaults and the peers' settings
    transformer: nn.Module
    sample: Callable[[int], Tensor]  # steps -> images (N, 1, H, W) in [-1, 1], full compute
    scorer: Callable[[Tensor], dict[str, float]] | None = None  # images -> accuracy, FID-proxy
    # calibration's sampler(config) on a few other seeds (None: full compute); None: not calibrated
    calibration: Callable[[TaylorSeerConfig | None], Tensor] | None = None


@dataclass
class Method:
    """One row: how the transformer is (or is not) accelerated."""

    label: str
    kind: str  # "full" | "ours" | "fewer-steps" | "peer"
    steps: int = STEPS
    config: TaylorSeerConfig | None = None
    peer: Callable[[nn.Module], Any] | None = None  # applies a peer; returns an object with remove()


@dataclass
class Row:
    method: str
    kind: str
    full_steps: int | None
    flops: int
    latency_s: float
    peak_memory_bytes: int | None
    cache_bytes: int | None
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def paper_preset(family: str) -> TaylorSeerConfig:
    """The official code's defaults for the family ("dit" or "flux")."""
    return TaylorSeerConfig.official(family)


# Adaptive rows: order 1 forecasts best between probe-placed full steps on both bundled models
# (order 2 overshoots after long gaps); three error budgets trace its speed/fidelity curve.
ADAPTIVE = dict(schedule="adaptive", order=1, interval=6)
ADAPTIVE_BUDGETS = (0.03, 0.06, 0.1)


def our_methods(
    family: str, default: TaylorSeerConfig | None = None, calibrated: TaylorSeerConfig | None = None
) -> list[Method]:
    """Our rows: the paper preset, our default, each granularity at the default's schedule,
    plain reuse at that schedule, the `calibrated` schedule, adaptive refresh at a few error
    budgets, and fewer steps at the default's number of evaluations."""
    default = default or TaylorSeerConfig()
    evaluations = len(default.planned_full_steps(STEPS))
    methods = [
        Method("full compute", "full"),
        Method("TaylorSeer official preset", "ours", config=paper_preset(family)),
        Method("ours: default", "ours", config=default),
    ]
    for granularity in ("module", "block", "stack", "model"):
        if granularity != default.granularity:
            config = dataclasses.replace(default, granularity=granularity)
            methods.append(Method(f"ours: granularity {granularity}", "ours", config=config))
    same_steps = tuple(default.planned_full_steps(STEPS))
    reuse = dataclasses.replace(default, order=0, schedule="calibrated", full_steps=same_steps, density=None)
    methods.append(Method("FORA (order 0, same schedule)", "ours", config=reuse))
    if calibrated is not None:
        methods.append(Method("ours: calibrated", "ours", config=calibrated))
    for budget in ADAPTIVE_BUDGETS:
        config = dataclasses.replace(default, **ADAPTIVE, error_budget=budget)
        methods.append(Method(f"ours: adaptive, error budget {budget}", "ours", config=config))
    methods.append(Method(f"fewer steps ({evaluations})", "fewer-steps", steps=evaluations))
    return methods


@contextlib.contextmanager
def applied(method: Method, subject: Subject) -> Iterator[tuple[Callable[[int], Tensor], Callable[[], dict]]]:
    """Apply the method's cache for the duration; yields (sample(steps), statistics())."""
    transformer = subject.transformer
    if method.kind == "ours":
        config = dataclasses.replace(method.config, num_steps=method.steps)
        with apply_taylorseer(transformer, config) as handle:
            yield (
                subject.sample,
                lambda: dict(full_steps=handle.stats["full_steps"], cache_bytes=handle.stats["cache_bytes"]),
            )
    elif method.kind == "peer":
        peer = method.peer(transformer)
        unwrap = wrap_forward(transformer, peer.wrap)  # the peer's cache context around every call

        def sample(steps: int) -> Tensor:
            peer.reset()  # the peers keep state across runs unless told
            return subject.sample(steps)

        try:
            yield sample, lambda: dict(full_steps=peer.computed_steps(), cache_bytes=None)
        finally:
            unwrap()
            peer.remove()
    else:
        yield subject.sample, lambda: dict(full_steps=method.steps, cache_bytes=None)


def _peak_memory(run: Callable[[], Tensor]) -> tuple[Tensor, int | None]:
    if not torch.cuda.is_available():
        return run(), None
    torch.cuda.reset_peak_memory_stats()
    output = run()
    return output, torch.cuda.max_memory_allocated()


def run_method(subject: Subject, method: Method, repeats: int) -> tuple[Row, Tensor]:
    """Sample with the method: a warm-up run (its images are scored), timed repeats, FLOPs."""
    with applied(method, subject) as (sample, statistics_of):
        images, peak = _peak_memory(lambda: sample(method.steps))
        stats = statistics_of()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            sample(method.steps)
            seconds.append(time.perf_counter() - start)
        with FlopCounterMode(display=False) as counter:
            sample(method.steps)
    row = Row(
        method.label, method.kind, stats["full_steps"], counter.get_total_flops(),
        statistics.median(seconds), peak, stats["cache_bytes"],
    )  # fmt: skip
    return row, images


def score(subject: Subject, rows: list[Row], images: list[Tensor]) -> None:
    """Fidelity of every row against the first (full compute); the scorer's metrics too."""
    reference = images[0]
    for row, output in zip(rows, images):
        row.metrics.update(
            psnr=psnr(output, reference), ssim=ssim(output, reference), rel_l2=relative_l2(output, reference)
        )
        if subject.scorer is not None:
            row.metrics.update(subject.scorer(output))


def run(
    subject: Subject,
    methods: list[Method],
    repeats: int = 3,
    log: Callable[[str], None] = print,
    follow_ups: Callable[[list[Row]], list[Method]] | None = None,
) -> list[Row]:
    """All methods on one subject, then those `follow_ups` picks from their rows (e.g. ours at
    the full-step count that an adaptive method chose); the first method must be full compute."""
    if methods[0].kind != "full":
        raise ValueError(f"the first method must be full compute, got {methods[0].label!r}")
    rows, images = [], []

    def measure(method: Method) -> None:
        row, output = run_method(subject, method, repeats)
        rows.append(row)
        images.append(output)
        log(f"{subject.name:12s} {method.label:45s} {row.latency_s:7.3f} s  full steps {row.full_steps}")

    for method in methods:
        measure(method)
    for method in follow_ups(rows) if follow_ups else []:
        measure(method)
    score(subject, rows, images)
    return rows
