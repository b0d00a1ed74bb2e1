"""Search the shapes of a sampler's placement, one per interval, on several choosing models at once.

    python -m taylorseer.bench.shape_search --models dit-digits,dit-narrow --held-out dit-heldout \\
        --samples 24 --seed 3000 --out docs/SHAPE-diffusion.md

A shape is a placement of the paper's number of full steps at one interval in a run of `--steps`
steps, taken as fractions of the run and stretched to the same interval's count at every step
count of the placement sweep (`core.schedule.stretched`; 28 and 50 steps). Its score is the
worst, over the choosing models, of their mean PSNR against full compute over those runs (each at
the default order and term ratio of their sampler). For each of `--intervals`, starting from the
shape the sampler kind ships with (`config.PLACEMENTS`) and the `spread` family, one full step at
a time is moved while the score rises (`calibrate.hill_climb`). Models named by `--held-out` are
scored on the shapes found and shown, but take no part in the choice. Every model also scores the
shipped and found shapes at `--check-steps`, step counts no search looks at: a found shape is
shipped only where the held-out models score it at least as high as the shipped one at both.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from taylorseer.bench.doc_tables import how_made, parse, table_parser, write_table
from taylorseer.bench.placement_score import PlacementScore
from taylorseer.bench.placement_sweep import INTERVALS, STEP_COUNTS
from taylorseer.calibrate import hill_climb, starting_points
from taylorseer.config import TaylorSeerConfig, paper_count
from taylorseer.core.schedule import stretched

Score = Callable[[list[int]], float]


def shape_score(
    score: PlacementScore, interval: int, shape_steps: int, step_counts: tuple[int, ...] = STEP_COUNTS
) -> Score:
    """Mean PSNR (dB) over `step_counts` (default the sweep's) at `interval`, for a shape given as
    steps of `shape_steps`."""

    def mean_psnr(shape: list[int]) -> float:
        fractions = [step / (shape_steps - 1) for step in shape]
        runs = [stretched(steps, paper_count(steps, interval), fractions) for steps in step_counts]
        return sum(map(score, step_counts, runs)) / len(runs)

    return mean_psnr


def starts(sampler: str, steps: int, budget: int) -> list[list[int]]:
    """The sampler's shipped placement and the `spread` family, at `steps` and `budget`."""
    shipped = TaylorSeerConfig(sampler=sampler).spread_placement(steps, budget)
    return [shipped, *(s for s in starting_points(steps, budget) if s != shipped)]


def search(
    sampler: str, scores: dict[str, PlacementScore], interval: int, steps: int, max_evaluations: int
) -> dict[str, list[int]]:
    """The shipped, best starting and found shapes at `interval`, chosen by the worst of `scores`."""
    means = [shape_score(score, interval, steps) for score in scores.values()]

    def cost(shape: list[int]) -> float:  # minimized: minus the worst chooser's mean PSNR
        return -min(mean(shape) for mean in means)

    candidates = starts(sampler, steps, paper_count(steps, interval))
    first = min(candidates, key=cost)
    best, _, evaluations = hill_climb(first, cost, steps, fixed=1, max_evaluations=max_evaluations)
    print(f"interval {interval}: {len(candidates) + evaluations} shapes scored; best {best}", flush=True)
    return {"shipped": candidates[0], "best start": first, "found": best}


def to_ship(found: list[dict], held_out: list[str]) -> dict[int, list[int]]:
    """Per interval, the shape to ship: the one found, unless a held-out model scores it below the
    shipped one at the searched step counts or at the checked ones (the gain on the choosers did
    not carry over to new weights or to other step counts)."""
    rows = {(row["interval"], row["label"]): row for row in found}
    chosen = {}
    for interval in dict.fromkeys(row["interval"] for row in found):
        shipped, new = rows[interval, "shipped"], rows[interval, "found"]
        carries = all(new[n] >= shipped[n] and new["checked"][n] >= shipped["checked"][n] for n in held_out)
        chosen[interval] = (new if carries else shipped)["shape"]
    return chosen


def markdown(
    sampler: str,
    found: list[dict],
    choosers: list[str],
    held_out: list[str],
    check_steps: tuple[int, ...],
    seconds: float,
    samples: int,
) -> str:
    shown = [*choosers, *held_out]

    def header(shape_column: str) -> list[str]:
        return [
            f"| interval | {shape_column} | " + " | ".join(shown) + " |",
            "|---:|---|" + "---:|" * len(shown),
        ]

    lines = [
        f"# The shapes of the {sampler} placement",
        "",
        how_made("taylorseer.bench.shape_search", seconds)
        + f", {samples} samples per model). Mean PSNR (dB) against full compute over "
        f"{STEP_COUNTS} steps at the paper's full-step count of each interval, each shape stretched to "
        f"each; chosen by the worst of {', '.join(choosers)}"
        + (f"; {', '.join(held_out)} took no part." if held_out else "."),
        "",
        *header("shape (its full steps)"),
    ]
    for row in found:
        cells = " | ".join(f"{row[name]:.2f}" for name in shown)
        lines.append(f"| {row['interval']} | {row['label']}: {', '.join(map(str, row['shape']))} | {cells} |")
    lines += [
        "",
        f"The shipped and found shapes at {check_steps} steps, which no search looked at:",
        "",
        *header("shape"),
    ]
    for row in found:
        if row["label"] != "best start":
            cells = " | ".join(f"{row['checked'][name]:.2f}" for name in shown)
            lines.append(f"| {row['interval']} | {row['label']} | {cells} |")
    lines += [
        "",
        "To ship: the shape found, unless a held-out model scores it below the shipped one in either table.",
        "",
    ]
    for interval, shape in to_ship(found, held_out).items():
        lines.append(f"- interval {interval}: {', '.join(map(str, shape))}")
    return "\n".join(lines)


def main() -> None:
    parser = table_parser(__doc__, "dit-digits,dit-narrow", samples=24, seed=3000)
    parser.add_argument("--held-out", default="", help="models scored on the shapes found, not choosing")
    parser.add_argument("--steps", type=int, default=50, help="step count the shapes are searched at")
    parser.add_argument("--intervals", default=",".join(map(str, INTERVALS)), help="a shape for each")
    parser.add_argument("--max-evaluations", type=int, default=150, help="per interval")
    parser.add_argument("--check-steps", default="20,36,40", help="step counts the shapes are checked at")
    args = parse(parser)
    start = time.perf_counter()
    choosers, held_out = args.models.split(","), list(filter(None, args.held_out.split(",")))
    scores = {name: PlacementScore(name, args.samples, args.seed) for name in choosers}
    samplers = {score.sampler for score in scores.values()}
    if len(samplers) != 1 or None in samplers:
        raise ValueError(f"the choosing models {choosers} must share one known sampler, got {samplers}")
    sampler = samplers.pop()
    intervals = [int(value) for value in args.intervals.split(",")]
    check_steps = tuple(int(value) for value in args.check_steps.split(","))
    labelled = {i: search(sampler, scores, i, args.steps, args.max_evaluations) for i in intervals}
    scores |= {name: PlacementScore(name, args.samples, args.seed) for name in held_out}
    found = [
        dict(interval=i, label=label, shape=shape)
        | {name: shape_score(score, i, args.steps)(shape) for name, score in scores.items()}
        | {"checked": {n: shape_score(s, i, args.steps, check_steps)(shape) for n, s in scores.items()}}
        for i, shapes in labelled.items()
        for label, shape in shapes.items()
    ]
    seconds = time.perf_counter() - start
    text = markdown(sampler, found, choosers, held_out, check_steps, seconds, args.samples)
    write_table(text, found, args.out)


if __name__ == "__main__":
    main()
