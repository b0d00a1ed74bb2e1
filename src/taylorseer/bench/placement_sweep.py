"""Where the full steps should go: placements of a fixed number of full steps, on the bundled models.

    python -m taylorseer.bench.placement_sweep --out docs/PLACEMENT.md

At the number of full steps of the paper's schedule for several intervals and step counts, each
placement is sampled at each order (1 and 2 unless told) on the same seeds and scored by PSNR
against full compute. Placements: the `spread` family (the first `leading` steps, the rest spread
to the last step with gaps shrinking toward the end as `density` grows; density 1 is even), the
paper's, and with `--stretched` the shipped calibrated schedules of bundled models stretched to
each count (`core.schedule.stretched`), and the placement each kind of sampler runs by default
(`config.PLACEMENTS`: its shapes, which `bench.shape_search` finds, or its spread). A kind's spread
is chosen on the worst case of its choosing models: `dit-digits` and `dit-narrow` for diffusion
(DDIM), `flux-digits` for flow matching; the placement for an unknown sampler is the best worst
case over all three.
`dit-heldout` and `flux-heldout` are measured in the same way and shown beside their chooser,
but take no part in any choice.
"""

from __future__ import annotations

import itertools
import time

from taylorseer.bench.doc_tables import how_made, parse, table_parser, write_table
from taylorseer.bench.placement_score import PlacementScore
from taylorseer.calibrate import calibrated_config
from taylorseer.config import BUDGET_WARMUP, TaylorSeerConfig
from taylorseer.core.schedule import full_step_indices, spread, stretched

# sampler -> the models that choose its placement (by their worst case)
CHOOSERS = {"diffusion": ("dit-digits", "dit-narrow"), "flow": ("flux-digits",)}
EVERY_CHOOSER = tuple(name for names in CHOOSERS.values() for name in names)
HELD_OUT = {"diffusion": "dit-heldout", "flow": "flux-heldout"}
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
    term_ratios: tuple[float | None, ...] = (None,),
    orders: tuple[int, ...] = ORDERS,
    stretched_from: tuple[str, ...] = (),
) -> list[dict]:
    """One row per (steps, interval, placement, order): full steps and PSNR (dB) vs full compute."""
    score = PlacementScore(name, samples, seed)
    shapes = {source: calibrated_fractions(source) for source in stretched_from}  # read once
    rows = []
    for steps, interval in itertools.product(STEP_COUNTS, INTERVALS):
        paper = full_step_indices(steps, interval, BUDGET_WARMUP)
        budget = len(paper)  # the paper's count
        placements = {"paper": paper}
        for first, density in itertools.product(leading, densities):
            placements[f"spread leading {first} density {density}"] = spread(steps, budget, first, density)
        for source, fractions in shapes.items():  # a model's shipped calibrated schedule, stretched
            placements[f"{source}'s calibrated, stretched"] = stretched(steps, budget, fractions)
        for sampler in ("flow", "diffusion", None):  # what each kind runs by default (config.PLACEMENTS)
            kind = sampler or "unknown-sampler"
            placements[f"shipped {kind} placement"] = TaylorSeerConfig(sampler=sampler).spread_placement(
                steps, budget
            )
        for (name_of, full_steps), order, ratio, terms in itertools.product(
            placements.items(), orders, gap_ratios, term_ratios
        ):
            label = name_of + ("" if ratio is None else f", gap ratio {ratio}")
            label += "" if terms is None else f", term ratio {terms}"
            value = score(steps, full_steps, order=order, gap_ratio=ratio, term_ratio=terms)
            rows.append(dict(model=name, steps=steps, interval=interval, budget=budget, placement=label,
                             order=order, psnr=value))  # fmt: skip
        runs = len(placements) * len(orders) * len(gap_ratios) * len(term_ratios)
        print(f"{name} {steps} steps, interval {interval}: {runs} runs", flush=True)
    return rows


def calibrated_fractions(name: str) -> list[float]:
    """A bundled model's shipped calibrated schedule as fractions of its run."""
    config = calibrated_config(name)
    return [step / (config.num_steps - 1) for step in config.full_steps]


def ranking(rows: list[dict], models: tuple[str, ...]) -> list[tuple[str, int, dict[str, float]]]:
    """(placement, order, per-model mean PSNR), from the best worst case over `models` down."""
    table: dict[tuple[str, int], dict[str, list[float]]] = {}
    for row in rows:
        per_model = table.setdefault((row["placement"], row["order"]), {})
        per_model.setdefault(row["model"], []).append(row["psnr"])
    ranked = [
        (placement, order, {model: sum(v) / len(v) for model, v in per_model.items()})
        for (placement, order), per_model in table.items()
    ]
    return sorted(ranked, key=lambda entry: -min(entry[2].get(m, -float("inf")) for m in models))


def markdown(rows: list[dict], models: list[str], seconds: float, samples: int, top: int = 8) -> str:
    lines = [
        "# Placement of the full steps",
        "",
        how_made("taylorseer.bench.placement_sweep", seconds)
        + f", {samples} samples per model). Mean PSNR (dB) against full compute over step counts "
        f"{STEP_COUNTS} and the paper's full-step counts at intervals {INTERVALS} (warm-up "
        f"{BUDGET_WARMUP}). Ranked by the choosing model(s) alone (by the worst of them when two "
        "choose); held-out models are shown beside them.",
        "",
    ]
    sections = [
        (f"{sampler}: chosen on {' and '.join(names)}", names, (HELD_OUT[sampler],))
        for sampler, names in CHOOSERS.items()
    ]
    unknown = "unknown sampler: chosen on every chooser (best worst case)"
    sections.append((unknown, EVERY_CHOOSER, tuple(HELD_OUT.values())))
    for title, choosers, held_out in sections:
        if not set(choosers) <= set(models):
            continue
        shown = [*choosers, *(m for m in held_out if m in models)]
        lines += [f"## {title}", "", "| placement | order | " + " | ".join(shown) + " |",
                  "|---|---:|" + "---:|" * len(shown)]  # fmt: skip
        ranked = ranking(rows, choosers)
        for placement, order, means in ranked[:top] + [e for e in ranked[top:] if e[0].startswith("paper")]:
            cells = " | ".join(f"{means[m]:.2f}" if m in means else "" for m in shown)
            lines.append(f"| {placement} | {order} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    models = ",".join([*EVERY_CHOOSER, *HELD_OUT.values()])
    parser = table_parser(__doc__, models, samples=16, seed=2000)
    parser.add_argument("--leading", default=",".join(map(str, LEADING)), help="leading full steps to try")
    parser.add_argument("--densities", default=",".join(map(str, DENSITIES)), help="densities to try")
    parser.add_argument("--gap-ratios", default="none", help="gap ratios to try (none: no limit)")
    parser.add_argument("--term-ratios", default="none", help="term ratios to try (none: no limit)")
    parser.add_argument("--orders", default=",".join(map(str, ORDERS)), help="orders to try")
    parser.add_argument(
        "--stretched", default="", help="bundled models whose shipped calibrated schedule to try, stretched"
    )
    args = parse(parser)
    start = time.perf_counter()
    models = args.models.split(",")
    leading = tuple(int(v) for v in args.leading.split(","))
    densities = tuple(float(v) for v in args.densities.split(","))
    ratios = tuple(None if v == "none" else float(v) for v in args.gap_ratios.split(","))
    terms = tuple(None if v == "none" else float(v) for v in args.term_ratios.split(","))
    orders = tuple(int(v) for v in args.orders.split(","))
    grid = (leading, densities, ratios, terms, orders, tuple(filter(None, args.stretched.split(","))))
    rows = [row for name in models for row in measure(name, args.samples, args.seed, *grid)]
    write_table(markdown(rows, models, time.perf_counter() - start, args.samples), rows, args.out)


if __name__ == "__main__":
    main()
