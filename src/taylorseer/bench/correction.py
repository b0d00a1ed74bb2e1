"""The hindsight correction on and off, at the default placement of several step counts and
intervals, on the bundled models (docs/CORRECTION.md).

    python -m taylorseer.bench.correction --samples 64 --seed 5000 --threads 2 --out docs/CORRECTION.md
"""

from __future__ import annotations

import time

from taylorseer.bench.doc_tables import how_made, parse, table_parser, write_table
from taylorseer.bench.placement_score import PlacementScore
from taylorseer.config import TaylorSeerConfig

MODELS = ("dit-digits", "dit-narrow", "dit-heldout", "flux-digits", "flux-narrow", "flux-heldout")
SETTINGS = ((50, 5), (28, 3), (50, 3), (50, 7), (28, 5), (20, 3))  # (steps, interval)


EXPLANATION = (
    "What it does: forecast steps do not look at the latents, so a forecast's error moves them off "
    "course. Once the next full step has run, the outputs over the gap are known better, by "
    "interpolation through it, and the difference, carried through the sampler's steps, says how far "
    "off the latents are. The full step then returns its output minus what takes them back, and keeps "
    "the output they would have met on course to forecast from (`taylorseer.core.hindsight`). It "
    "costs no model call. The sampler's step is taken as first order in the model's output (FlowMatch "
    "Euler on a velocity, DDIM on a noise prediction), and the model's denoised estimate as not "
    "following a small error of the latents."
)


def measure(name: str, samples: int, seed: int) -> list[dict]:
    """PSNR with the correction (the default) and without, per (steps, interval)."""
    score = PlacementScore(name, samples, seed)
    rows = []
    for steps, interval in SETTINGS:
        placement = TaylorSeerConfig(interval=interval, sampler=score.sampler).spread_placement(steps)
        on, off = score(steps, placement), score(steps, placement, correction=False)
        rows.append(dict(model=name, steps=steps, interval=interval, full=len(placement), on=on, off=off))
        print(f"{name} {steps}/{interval}: {on:.2f} vs {off:.2f}", flush=True)
    return rows


def markdown(rows: list[dict], samples: int, seed: int, seconds: float) -> str:
    lines = [
        "# The hindsight correction, on and off",
        "",
        how_made("taylorseer.bench.correction", seconds)
        + f"): PSNR (dB) of the final images against full compute, {samples} "
        f"samples (noise seed {seed}), at the default placement and settings of each step count and "
        'interval, with `correction` at its default (on: granularity "model", a sampler of known '
        "kind) and with `correction=False`. dit-* sample with DDIM, flux-* with FlowMatch Euler "
        "(shift 3); dit-heldout and flux-heldout took part in no choice of a default.",
        "",
        EXPLANATION,
        "",
        "| model | steps | interval | full steps | on | off | on - off |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} | {r['steps']} | {r['interval']} | {r['full']} | {r['on']:.2f} | {r['off']:.2f} "
        f"| {r['on'] - r['off']:+.2f} |"
        for r in rows
    ]
    return "\n".join(lines)


def main() -> None:
    args = parse(table_parser(__doc__, ",".join(MODELS), samples=64, seed=5000))
    start = time.perf_counter()
    rows = [row for name in args.models.split(",") for row in measure(name, args.samples, args.seed)]
    write_table(markdown(rows, args.samples, args.seed, time.perf_counter() - start), rows, args.out)


if __name__ == "__main__":
    main()
