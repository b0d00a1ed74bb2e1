"""Does one more full step help? A measurement.

    python -m taylorseer.bench.extra_step --models dit-digits,flux-digits,dit-heldout,flux-heldout \\
        --out docs/EXTRA_STEP.md

For a placement of full steps (the default's and the paper's fixed one, at `--steps` and
`--interval`), each step it forecasts is made full in turn, one at a time, and the PSNR against
full compute compared with the placement's own: how often one more full step lowers fidelity, by
how much on average and at worst.
"""

from __future__ import annotations

import dataclasses
import time

from taylorseer.bench.doc_tables import how_made, parse, table_parser, write_table
from taylorseer.bench.placement_score import PlacementScore
from taylorseer.config import TaylorSeerConfig

MODELS = ("dit-digits", "flux-digits", "dit-heldout", "flux-heldout")


def with_one_more(placement: list[int], num_steps: int) -> list[tuple[int, list[int]]]:
    """(step, placement + that step) for every step of the run the placement does not run in full."""
    return [(step, sorted([*placement, step])) for step in range(num_steps) if step not in placement]


def placements(base: TaylorSeerConfig, steps: int) -> dict[str, list[int]]:
    """`base`'s default placement and the paper's fixed one, at its interval."""
    paper = dataclasses.replace(base, schedule="fixed")
    return {"default": base.spread_placement(steps), "paper's fixed": paper.planned_full_steps(steps)}


def measure(name: str, steps: int, interval: int, samples: int, seed: int) -> list[dict]:
    """One row per placement: its PSNR and the change one more full step makes at each position."""
    score = PlacementScore(name, samples, seed)
    base = TaylorSeerConfig(interval=interval, sampler=score.sampler)
    rows = []
    for label, placement in placements(base, steps).items():
        own = score(steps, placement)
        changes = {step: score(steps, more) - own for step, more in with_one_more(placement, steps)}
        rows.append(dict(model=name, placement=label, full_steps=placement, psnr=own, changes=changes))
        print(f"{name}, {label}: {len(changes) + 1} runs", flush=True)
    return rows


def markdown(rows: list[dict], seconds: float, samples: int, steps: int) -> str:
    lines = [
        "# One more full step",
        "",
        how_made("taylorseer.bench.extra_step", seconds)
        + f", {samples} samples per model, {steps} steps). Each step a placement forecasts",
        "is made full in turn, one at a time; the change is the PSNR (dB, against full compute) with that",
        "one more full step minus the placement's own.",
        "",
        "| model | placement | PSNR | one more full step: lower | mean change | worst | best |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        changes = list(row["changes"].values())
        lower = sum(change < 0 for change in changes)
        lines.append(
            f"| {row['model']} | {row['placement']} {row['full_steps']} | {row['psnr']:.2f} | "
            f"{lower} of {len(changes)} | {sum(changes) / len(changes):+.2f} | {min(changes):+.2f} | "
            f"{max(changes):+.2f} |"
        )
    lines += ["", "The change at each step made full:", ""]
    for row in rows:
        cells = ", ".join(f"{step}: {change:+.2f}" for step, change in row["changes"].items())
        lines.append(f"- {row['model']}, {row['placement']}: {cells}")
    return "\n".join(lines)


def main() -> None:
    parser = table_parser(__doc__, ",".join(MODELS), samples=32, seed=7000)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--interval", type=int, default=3)
    args = parse(parser)
    start = time.perf_counter()
    rows = [
        row
        for name in args.models.split(",")
        for row in measure(name, args.steps, args.interval, args.samples, args.seed)
    ]
    write_table(markdown(rows, time.perf_counter() - start, args.samples, args.steps), rows, args.out)


if __name__ == "__main__":
    main()
