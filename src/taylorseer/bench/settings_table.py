"""Choosing settings: what each interval and schedule gives on each bundled model.

    python -m taylorseer.bench.settings_table --out docs/SETTINGS.md

For each bundled model, the default config at intervals 2-8, the shipped calibrated schedule and
adaptive refresh, each against full compute on the same seeds: FLOPs speedup, latency speedup
(median of timed runs after a warm-up, in one process) and PSNR.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from taylorseer.bench import harness, subjects
from taylorseer.bench.doc_tables import how_made
from taylorseer.bench.harness import Method
from taylorseer.calibrate import calibrated_config
from taylorseer.config import TaylorSeerConfig

MODELS = ("dit-digits", "flux-digits", "dit-heldout", "flux-heldout")
INTERVALS = (2, 3, 4, 5, 6, 8)


def methods(name: str) -> list[Method]:
    default = TaylorSeerConfig()
    rows = [Method("full compute", "full")]
    for interval in INTERVALS:
        label = f"interval {interval}" + (" (the default)" if interval == default.interval else "")
        rows.append(Method(label, "ours", config=dataclasses.replace(default, interval=interval)))
    if name in ("dit-digits", "flux-digits"):  # the bundled models with a shipped calibrated schedule
        rows.append(Method("shipped calibrated schedule", "ours", config=calibrated_config(name)))
    for budget in (0.06, 0.1):
        config = dataclasses.replace(default, schedule="adaptive", interval=6, error_budget=budget)
        rows.append(Method(f"adaptive, error budget {budget}", "ours", config=config))
    return rows


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=4000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models: threads only add noise to the timings
    start = time.perf_counter()
    lines = ["# Choosing settings", ""]
    for name in MODELS:
        subject = subjects.bundled_subject(name, args.samples, args.seed)
        rows = harness.run(subject, methods(name), repeats=3, log=lambda line: None)
        full = rows[0]
        lines += [f"## {name}", "", "| setting | full steps | FLOPs speedup | latency speedup | PSNR (dB) |"]
        lines.append("|---|---:|---:|---:|---:|")
        for row in rows[1:]:
            lines.append(
                f"| {row.method} | {row.full_steps} | {full.flops / row.flops:.2f}x | "
                f"{full.latency_s / row.latency_s:.2f}x | {row.metrics['psnr']:.2f} |"
            )
        lines.append("")
        print(f"{name} done", flush=True)
    lines += [
        how_made("taylorseer.bench.settings_table", time.perf_counter() - start)
        + f", {args.samples} samples "
        "per model, one thread). On these small models a latency speedup is the ratio of two medians of "
        "3 runs of well under a second each and moves by a fifth or more between runs; the FLOPs "
        "speedup is exact. On a large model latency follows FLOPs (RESULTS.md, flux-large).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
