"""Fast calibration and the exhaustive search, each run on several sets of calibration samples
and scored on the same bench samples: how much of the search's lead is the placement, and how
much the samples it happened to be given (docs/CALIBRATION.md).

    python -m taylorseer.bench.calibration_seeds --threads 2 --out docs/CALIBRATION.md
"""

from __future__ import annotations

import statistics
import time

import torch

from taylorseer.api import maybe_applied
from taylorseer.bench.doc_tables import how_made, parse, table_parser, write_table
from taylorseer.bench.placement_score import PlacementScore
from taylorseer.bench.subjects import CALIBRATION_SAMPLES, CALIBRATION_SEED_OFFSET
from taylorseer.calibrate import Sampler, calibrate, search
from taylorseer.config import TaylorSeerConfig

MODELS = ("dit-digits", "flux-digits", "dit-heldout", "flux-heldout")
STEPS = 50
BENCH_SEED = 1000  # the bench's samples; its calibration samples start at BENCH_SEED + offset
OTHER_CALIBRATION_SEEDS = (2000, 3000, 4000)


def calibration_sampler(score: PlacementScore, seed: int) -> Sampler:
    """`sampler(config)` over `CALIBRATION_SAMPLES` digits of the scored model from `seed`."""
    noise = score.generator.noise(CALIBRATION_SAMPLES, seed)
    labels = torch.arange(CALIBRATION_SAMPLES) % 10

    def sampler(config: TaylorSeerConfig | None) -> torch.Tensor:
        with maybe_applied(score.generator.transformer, config):
            return score.generator.sample(noise, labels, steps=STEPS)

    return sampler


def measure(name: str, samples: int, seed: int, seeds: tuple[int, ...]) -> list[dict]:
    """Per calibration seed in `seeds`: the PSNR of the default, of `calibrate`'s and of `search`'s
    placements (12 of 50 full steps) on `samples` samples from `seed`, and the calls each made."""
    score = PlacementScore(name, samples, seed)
    placement = TaylorSeerConfig(sampler=score.sampler).spread_placement(STEPS)  # the default's
    rows = []
    for seed in seeds:
        row = dict(model=name, seed=seed, default=score(STEPS, placement))
        for method, find in (("calibrate", calibrate), ("search", search)):
            config, report = find(calibration_sampler(score, seed), TaylorSeerConfig(), STEPS, len(placement))
            row[method] = score(STEPS, config.full_steps)
            row[f"{method}_calls"] = report["sampler_calls"]
        rows.append(row)
        print(name, seed, {k: v for k, v in row.items() if k not in ("model", "seed")}, flush=True)
    return rows


def markdown(rows: list[dict], samples: int, seed: int, seconds: float) -> str:
    lines = [
        "# Fast calibration and the exhaustive search, over sets of calibration samples",
        "",
        how_made("taylorseer.bench.calibration_seeds", seconds)
        + f"). Each model is calibrated on {CALIBRATION_SAMPLES} samples from "
        "each calibration seed, by `calibrate` (a dozen sampler calls) and by the exhaustive `search`, "
        f"for {STEPS} steps with as many full steps as the default (12), and every placement is scored "
        f"on the same {samples} samples (noise seed {seed}; `taylorseer bench` samples from seed "
        f"{BENCH_SEED} and calibrates from {BENCH_SEED + CALIBRATION_SEED_OFFSET}): PSNR (dB) against "
        "full compute.",
        "",
        "| model | calibration seed | default | calibrate (calls) | search (calls) | calibrate - search |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['seed']} | {r['default']:.2f} | {r['calibrate']:.2f} "
            f"({r['calibrate_calls']}) | {r['search']:.2f} ({r['search_calls']}) "
            f"| {r['calibrate'] - r['search']:+.2f} |"
        )
    lines += ["", "Means over the calibration seeds:", ""]
    lines += ["| model | default | calibrate | search | calibrate - search |", "|---|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["model"] for r in rows):
        ours = [r for r in rows if r["model"] == name]
        mean = {key: statistics.mean(r[key] for r in ours) for key in ("default", "calibrate", "search")}
        lines.append(
            f"| {name} | {mean['default']:.2f} | {mean['calibrate']:.2f} | {mean['search']:.2f} "
            f"| {mean['calibrate'] - mean['search']:+.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = table_parser(__doc__, ",".join(MODELS), samples=100, seed=BENCH_SEED)
    parser.add_argument("--seeds", help="calibration seeds (default: the bench's for --seed, then 2000-4000)")
    args = parse(parser)
    start = time.perf_counter()
    default_seeds = (args.seed + CALIBRATION_SEED_OFFSET, *OTHER_CALIBRATION_SEEDS)
    seeds = tuple(int(seed) for seed in args.seeds.split(",")) if args.seeds else default_seeds
    rows = [row for name in args.models.split(",") for row in measure(name, args.samples, args.seed, seeds)]
    write_table(markdown(rows, args.samples, args.seed, time.perf_counter() - start), rows, args.out)


if __name__ == "__main__":
    main()
