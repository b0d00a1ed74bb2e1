"""Our default against each peer at the same number of full steps, at 50 and 28 sampling steps.

    python -m taylorseer.bench.margins --models dit-digits,dit-heldout,flux-digits,flux-heldout \\
        --out docs/MARGINS.md

Settings: 50 steps at interval 5 and 28 steps at interval 3, where the paper's rule runs 12 and 11
full steps. Every method runs exactly that many (the count is measured and shown):
- ours: `TaylorSeerConfig(interval=...)`, the default as a user gets it;
- the official TaylorSeer (our reproduction: its rule with first_enhance `BUDGET_WARMUP`, so as
  many full steps as ours, per-module Taylor);
- diffusers TaylorSeerCache on the modules our granularity "module" caches, its own rule
  (every `interval`-th step after 2 warm-up steps);
- cache-dit DBCache F1B0 + its TaylorSeer calibrator, the paper's full steps as its steps mask
  (at 28 steps also its own "fast" mask, which has 11 full steps);
each peer at orders 1 and 2. PSNR (dB) of the images against full compute on the same seeds; the
margin is ours minus the best peer. `taylorseer bench` runs it on the bench's samples (a section
of RESULTS.md); run alone as above, on seeds of its own, it writes docs/MARGINS.md.
"""

from __future__ import annotations

import time

import torch

from taylorseer.bench import harness, peers
from taylorseer.bench.doc_tables import how_made, parse, table_parser, write_table
from taylorseer.bench.harness import Method, Subject
from taylorseer.bench.metrics import psnr
from taylorseer.bench.subjects import FAMILIES, SAME_MODULES
from taylorseer.config import BUDGET_WARMUP, TaylorSeerConfig
from taylorseer.core.schedule import full_step_indices
from taylorseer.models.bundled import load_bundled

SETTINGS = ((50, 5), (28, 3))  # (sampling steps, interval)
ORDERS = (1, 2)
CACHE_DIT_FAST_28 = (0, 1, 2, 3, 4, 5, 7, 11, 16, 22, 27)  # cache_dit.steps_mask(total_steps=28, "fast")
EXPLANATION = (
    "PSNR (dB) against full compute; every method runs the same number of full steps (the paper's "
    "count at interval 5 for 50 steps, interval 3 for 28). `dit-heldout` and `flux-heldout` took part "
    "in no choice of our defaults; the margin is ours minus the best peer."
)


def methods(family: str, steps: int, interval: int) -> list[Method]:
    """Ours and every peer, each at the paper's number of full steps for (steps, interval)."""
    paper = full_step_indices(steps, interval, BUDGET_WARMUP)
    masks = {"paper's full steps": paper} | ({"its fast mask": CACHE_DIT_FAST_28} if steps == 28 else {})
    rows = [Method("ours: default", "ours", steps, TaylorSeerConfig(interval=interval))]
    for order in ORDERS:
        official = TaylorSeerConfig.official(interval=interval, order=order, first_enhance=BUDGET_WARMUP)
        rows.append(Method(f"official TaylorSeer, order {order}", "ours", steps, official))
        rows.append(
            Method(
                f"diffusers TaylorSeerCache, order {order}", "peer", steps,
                peer=lambda t, order=order: peers.apply_diffusers_taylorseer(
                    t, interval, order, 2, **SAME_MODULES[family]
                ),
            )
        )  # fmt: skip
        for name, mask in masks.items():
            rows.append(
                Method(
                    f"cache-dit DBCache F1B0 + TaylorSeer, order {order}, {name}", "peer", steps,
                    peer=lambda t, order=order, mask=mask: peers.apply_cache_dit(
                        t, "dbcache+taylorseer", steps, fn_blocks=1, order=order, full_steps=mask
                    ),
                )
            )  # fmt: skip
    return rows


def measure(name: str, samples: int, seed: int) -> list[dict]:
    """One row per (setting, method): its full steps and PSNR against full compute."""
    generator = load_bundled(name)
    labels = torch.arange(samples) % 10
    noise = generator.noise(samples, seed)
    subject = Subject(
        name,
        FAMILIES[name],
        generator.transformer,
        lambda steps: generator.sample(noise, labels, steps=steps),
    )
    rows = []
    for steps, interval in SETTINGS:
        reference = subject.sample(steps)
        for method in methods(subject.family, steps, interval):
            with harness.applied(method, subject) as (sample, statistics):
                images = sample(steps)
                full_steps = statistics()["full_steps"]
            rows.append(dict(model=name, steps=steps, interval=interval, method=method.label,
                             full_steps=full_steps, psnr=psnr(images, reference)))  # fmt: skip
        print(f"{name}, {steps} steps: {len(rows)} rows", flush=True)
    return rows


def summary(rows: list[dict]) -> list[str]:
    """The margin table: per model and step count, ours, the best peer and ours minus it."""
    lines = [
        "| model | steps | full steps | ours: default | best peer | PSNR | margin |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for key in dict.fromkeys((row["model"], row["steps"]) for row in rows):
        group = [row for row in rows if (row["model"], row["steps"]) == key]
        ours = next(row for row in group if row["method"] == "ours: default")
        best = max((row for row in group if row is not ours), key=lambda row: row["psnr"])
        lines.append(
            f"| {key[0]} | {key[1]} | {ours['full_steps']} | {ours['psnr']:.2f} | {best['method']} "
            f"({best['full_steps']} full) | {best['psnr']:.2f} | {ours['psnr'] - best['psnr']:+.2f} |"
        )
    return lines


def every_row(rows: list[dict]) -> list[str]:
    """Every method's full steps and PSNR."""
    lines = [
        "| model | steps | method | full steps | PSNR |",
        "|---|---:|---|---:|---:|",
    ]
    lines += [
        f"| {row['model']} | {row['steps']} | {row['method']} | {row['full_steps']} | {row['psnr']:.2f} |"
        for row in rows
    ]
    return lines


def markdown(rows: list[dict], seconds: float, samples: int) -> str:
    """The page this tool writes alone: the margin table, then every row."""
    lines = [
        "# Our default against the peers at equal full steps",
        "",
        how_made("taylorseer.bench.margins", seconds) + f", {samples} samples per model). {EXPLANATION}",
        "",
    ]
    return "\n".join([*lines, *summary(rows), "", "Every row:", "", *every_row(rows)])


def main() -> None:
    args = parse(table_parser(__doc__, ",".join(FAMILIES), samples=16, seed=5000))
    start = time.perf_counter()
    rows = [row for name in args.models.split(",") for row in measure(name, args.samples, args.seed)]
    write_table(markdown(rows, time.perf_counter() - start, args.samples), rows, args.out)


if __name__ == "__main__":
    main()
