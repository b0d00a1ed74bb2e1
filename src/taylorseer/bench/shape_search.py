"""Search the shape of a placement on several choosing models at once.

    python -m taylorseer.bench.shape_search --models dit-digits,dit-narrow --held-out dit-heldout \\
        --samples 24 --seed 3000 --out docs/SHAPE.md

A shape is a placement of `--budget` full steps in a run of `--steps` steps, taken as fractions
of the run and stretched to every step count and full-step count of the placement sweep
(`core.schedule.stretched`; 28 and 50 steps, the paper's counts at intervals 3, 5 and 7). Its
score is the worst, over the choosing models, of their mean PSNR against full compute over those
six runs (each at the default order and term ratio of their sampler). Starting from the shape
the sampler kind ships with (`config.PLACEMENTS`) and the `spread` family, one full step at a
time is moved while the score rises (`calibrate.hill_climb`). Models named by `--held-out` are
scored on the shapes found and shown, but take no part in the choice.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable

import torch

from taylorseer.api import maybe_applied
from taylorseer.api.pipelines import detected_sampler
from taylorseer.bench.doc_tables import parse, table_parser, write_table
from taylorseer.bench.metrics import psnr
from taylorseer.bench.placement_sweep import INTERVALS, STEP_COUNTS
from taylorseer.calibrate import hill_climb, starting_points, with_full_steps
from taylorseer.config import TaylorSeerConfig
from taylorseer.core.schedule import full_step_indices, stretched
from taylorseer.models.bundled import load_bundled

Score = Callable[[list[int]], float]


def model_score(name: str, samples: int, seed: int, shape_steps: int) -> Score:
    """Mean PSNR (dB) of `name` over the sweep's runs for a shape given as steps of `shape_steps`."""
    generator = load_bundled(name)
    labels = torch.arange(samples) % 10
    noise = generator.noise(samples, seed)
    base = TaylorSeerConfig(sampler=detected_sampler(generator.transformer))
    references = {steps: generator.sample(noise, labels, steps=steps) for steps in STEP_COUNTS}
    measured: dict[tuple[int, tuple[int, ...]], float] = {}  # (steps, full steps) -> PSNR

    def run(steps: int, full_steps: list[int]) -> float:
        key = (steps, tuple(full_steps))
        if key not in measured:
            with maybe_applied(generator.transformer, with_full_steps(base, full_steps, steps)):
                measured[key] = psnr(generator.sample(noise, labels, steps=steps), references[steps])
        return measured[key]

    def score(shape: list[int]) -> float:
        fractions = [step / (shape_steps - 1) for step in shape]
        scores = [
            run(steps, stretched(steps, len(full_step_indices(steps, interval, 3)), fractions))
            for steps, interval in itertools.product(STEP_COUNTS, INTERVALS)
        ]
        return sum(scores) / len(scores)

    return score


def starts(sampler: str, steps: int, budget: int) -> list[list[int]]:
    """The sampler's shipped placement and the `spread` family, at `steps` and `budget`."""
    shipped = TaylorSeerConfig(sampler=sampler).spread_placement(steps, budget)
    return [shipped, *(s for s in starting_points(steps, budget) if s != shipped)]


def markdown(
    sampler: str, found: list[dict], choosers: list[str], held_out: list[str], seconds: float, samples: int
) -> str:
    shown = [*choosers, *held_out]
    lines = [
        f"# The shape of the {sampler} placement",
        "",
        f"`python -m taylorseer.bench.shape_search {' '.join(sys.argv[1:])}` ({seconds / 60:.0f} min on this "
        f"repo's 2-core CPU, {samples} samples per model). Mean PSNR (dB) against full compute over "
        f"{STEP_COUNTS} steps and the paper's full-step counts at intervals {INTERVALS}, each shape "
        f"stretched to each; chosen by the worst of {', '.join(choosers)}"
        + (f"; {', '.join(held_out)} took no part." if held_out else "."),
        "",
        "| shape (its full steps) | " + " | ".join(shown) + " |",
        "|---|" + "---:|" * len(shown),
    ]
    for row in found:
        cells = " | ".join(f"{row[name]:.2f}" for name in shown)
        lines.append(f"| {row['label']}: {', '.join(map(str, row['shape']))} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = table_parser(__doc__, "dit-digits,dit-narrow", samples=24, seed=3000)
    parser.add_argument("--held-out", default="", help="models scored on the shapes found, not choosing")
    parser.add_argument("--steps", type=int, default=50, help="step count the shape is searched at")
    parser.add_argument("--budget", type=int, default=12, help="full steps of the shape")
    parser.add_argument("--max-evaluations", type=int, default=300)
    args = parse(parser)
    start = time.perf_counter()
    choosers, held_out = args.models.split(","), list(filter(None, args.held_out.split(",")))
    samplers = {detected_sampler(load_bundled(name).transformer) for name in choosers}
    if len(samplers) != 1 or None in samplers:
        raise ValueError(f"the choosing models {choosers} must share one known sampler, got {samplers}")
    sampler = samplers.pop()
    scores = {name: model_score(name, args.samples, args.seed, args.steps) for name in choosers}

    def cost(shape: list[int]) -> float:  # minimized: minus the worst chooser's mean PSNR
        return -min(score(shape) for score in scores.values())

    candidates = starts(sampler, args.steps, args.budget)
    first = min(candidates, key=cost)
    best, _, evaluations = hill_climb(first, cost, args.steps, fixed=1, max_evaluations=args.max_evaluations)
    print(f"{len(candidates) + evaluations} shapes scored; best {best}", flush=True)
    scores |= {name: model_score(name, args.samples, args.seed, args.steps) for name in held_out}
    labelled = {"shipped": candidates[0], "best start": first, "found": best}
    found = [
        dict(label=label, shape=shape) | {name: score(shape) for name, score in scores.items()}
        for label, shape in labelled.items()
    ]
    text = markdown(sampler, found, choosers, held_out, time.perf_counter() - start, args.samples)
    write_table(text, found, args.out)


if __name__ == "__main__":
    main()
