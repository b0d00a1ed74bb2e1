"""Where the full steps should go: placements of a fixed number of full steps, on the bundled models.

    python -m taylorseer.bench.placement_sweep --out docs/PLACEMENT.md

At the number of full steps of the paper's schedule for several intervals and step counts, each
placement of the `spread` family (the first `leading` steps, the rest spread to the last step
with gaps shrinking toward the end as `density` grows; density 1 is even) is sampled with orders
1 and 2 on the same seeds, and scored by PSNR against full compute. The models that choose the
default are `dit-digits` (DDIM) and `flux-digits` (flow matching); `flux-heldout` is measured in
the same way but takes no part in the choice.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

from taylorseer.api import maybe_applied
from taylorseer.bench.metrics import psnr
from taylorseer.calibrate import with_full_steps
from taylorseer.config import TaylorSeerConfig
from taylorseer.core.schedule import full_step_indices, spread
from taylorseer.models.bundled import load_bundled

CHOOSERS = ("dit-digits", "flux-digits")
STEP_COUNTS = (28, 50)
INTERVALS = (3, 5, 7)
LEADING = (1, 2, 3)
DENSITIES = (1.0, 1.5, 2.0, 2.5, 3.0)
ORDERS = (1, 2)


def measure(
    name: str,
    samples: int,
    seed: int,
    leading: tuple[int, ...] = LEADING,
    densities: tuple[float, ...] = DENSITIES,
    gap_ratios: tuple[float | None, ...] = (None,),
) -> list[dict]:
    """One row per (steps, interval, placement, order): full steps and PSNR (dB) vs full compute."""
    generator = load_bundled(name)
    labels = torch.arange(samples) % 10
    noise = generator.noise(samples, seed)
    rows = []
    for steps, interval in itertools.product(STEP_COUNTS, INTERVALS):
        reference = generator.sample(noise, labels, steps=steps)
        budget = len(full_step_indices(steps, interval, 3))  # the paper's count (warm-up 3)
        placements = {"paper": full_step_indices(steps, interval, 3)}
        for first, density in itertools.product(leading, densities):
            placements[f"spread leading {first} density {density}"] = spread(steps, budget, first, density)
        for (name_of, full_steps), order, ratio in itertools.product(placements.items(), ORDERS, gap_ratios):
            config = with_full_steps(TaylorSeerConfig(order=order, gap_ratio=ratio), full_steps, steps)
            label = name_of if ratio is None else f"{name_of}, gap ratio {ratio}"
            with maybe_applied(generator.transformer, config):
                images = generator.sample(noise, labels, steps=steps)
            rows.append(dict(model=name, steps=steps, interval=interval, budget=budget, placement=label,
                             order=order, psnr=psnr(images, reference)))  # fmt: skip
        print(f"{name} {steps} steps, interval {interval}: {len(placements) * len(ORDERS)} runs", flush=True)
    return rows


def ranking(rows: list[dict], models: tuple[str, ...]) -> list[tuple[str, int, float, dict[str, float]]]:
    """(placement, order, mean PSNR over `models`, per-model mean) from best to worst."""
    table: dict[tuple[str, int], dict[str, list[float]]] = {}
    for row in rows:
        if row["model"] in models:
            table.setdefault((row["placement"], row["order"]), {}).setdefault(row["model"], []).append(
                row["psnr"]
            )
    ranked = []
    for (placement, order), per_model in table.items():
        means = {model: sum(v) / len(v) for model, v in per_model.items()}
        ranked.append((placement, order, sum(means.values()) / len(means), means))
    return sorted(ranked, key=lambda entry: -entry[2])


def markdown(rows: list[dict], models: list[str], seconds: float, samples: int, top: int = 12) -> str:
    lines = [
        "# Placement of the full steps",
        "",
        f"`python -m taylorseer.bench.placement_sweep {' '.join(sys.argv[1:])}` ({seconds / 60:.0f} min on "
        "this repo's 2-core CPU, "
        f"{samples} samples per model). Mean PSNR (dB) against full compute over step counts "
        f"{STEP_COUNTS} and the paper's full-step counts at intervals {INTERVALS} (warm-up 3).",
        "",
    ]
    for title, chosen in (
        ("Chosen on", CHOOSERS),
        ("Held out", tuple(m for m in models if m not in CHOOSERS)),
    ):
        if not chosen:
            continue
        lines += [f"## {title}: {', '.join(chosen)}", "", "| placement | order | mean | "
                  + " | ".join(chosen) + " |", "|---|---:|---:|" + "---:|" * len(chosen)]  # fmt: skip
        for placement, order, mean, per_model in ranking(rows, chosen)[:top]:
            cells = " | ".join(f"{per_model[m]:.2f}" for m in chosen)
            lines.append(f"| {placement} | {order} | {mean:.2f} | {cells} |")
        paper = [entry for entry in ranking(rows, chosen) if entry[0] == "paper"]
        for _, order, mean, _ in paper:
            lines.append(f"| paper's placement | {order} | {mean:.2f} | |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(CHOOSERS))
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--leading", default=",".join(map(str, LEADING)), help="leading full steps to try")
    parser.add_argument("--densities", default=",".join(map(str, DENSITIES)), help="densities to try")
    parser.add_argument("--gap-ratios", default="none", help="gap ratios to try (none: no limit)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    models = args.models.split(",")
    leading = tuple(int(v) for v in args.leading.split(","))
    densities = tuple(float(v) for v in args.densities.split(","))
    ratios = tuple(None if v == "none" else float(v) for v in args.gap_ratios.split(","))
    rows = [
        row for name in models for row in measure(name, args.samples, args.seed, leading, densities, ratios)
    ]
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    text = markdown(rows, models, time.perf_counter() - start, args.samples)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
