"""Orchestrating `taylorseer bench`: subjects x methods, then JSON, Markdown and a plot."""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from taylorseer.bench import harness, margins, report
from taylorseer.bench.harness import Method, Row, Subject
from taylorseer.bench.subjects import SAME_MODULES
from taylorseer.calibrate import calibrate, calibrated_config, search, spread, with_full_steps
from taylorseer.config import TaylorSeerConfig
from taylorseer.wiring.samplers import model_sampler


def peer_methods(family: str, default: TaylorSeerConfig) -> list[Method]:
    """The peers as installed packages, each as its documentation drives it; none if missing."""
    try:
        import torch

        from taylorseer.bench import peers
    except ImportError as error:
        print(f"peers skipped: {error}")
        return []
    # diffusers' rule with warm-up 2 runs as many full steps as our default (12 of 50 at interval 5)
    ours = dict(interval=default.interval, order=default.order, warmup=2)
    return [
        Method(
            "diffusers TaylorSeerCache (its defaults)", "peer",
            peer=lambda t: peers.apply_diffusers_taylorseer(t, 5, 1, 3, factors_dtype=torch.bfloat16),
        ),
        Method(
            "diffusers TaylorSeerCache (our modules, schedule)", "peer",
            peer=lambda t: peers.apply_diffusers_taylorseer(t, **ours, **SAME_MODULES[family]),
        ),
        Method(
            "cache-dit DBCache", "peer", peer=lambda t: peers.apply_cache_dit(t, "dbcache", harness.STEPS)
        ),
        Method(
            "cache-dit DBCache + TaylorSeer", "peer",
            peer=lambda t: peers.apply_cache_dit(t, "dbcache+taylorseer", harness.STEPS),  # its order 1
        ),
    ]  # fmt: skip


# On the large random model only speed means something: its rows are the latency/overhead rows.
LATENCY_ROWS = ("full compute", "TaylorSeer official preset", "ours: default", "ours: granularity module")


def methods_for(subject: Subject, default: TaylorSeerConfig, with_peers: bool) -> list[Method]:
    if subject.name == "flux-large":
        methods = harness.our_methods(subject.family, default)
        methods = [m for m in methods if m.label in LATENCY_ROWS or m.kind == "fewer-steps"]
    else:
        shipped = calibrated_config(subject.name) if subject.name in SHIPPED_SCHEDULES else None
        methods = harness.our_methods(subject.family, default, shipped) + calibrations(subject, default)
    return methods + (peer_methods(subject.family, default) if with_peers else [])


SHIPPED_SCHEDULES = ("dit-digits", "flux-digits")  # found by `taylorseer calibrate`, shipped


def calibrations(subject: Subject, default: TaylorSeerConfig) -> list[Method]:
    """Rows of schedules calibrated here, on the subject's calibration seeds (not the bench's), at
    the default's number of full steps: `calibrate` (a dozen runs) and the exhaustive `search`,
    each labelled with what it cost."""
    if subject.calibration is None:
        return []
    budget = len(default.planned_full_steps(harness.STEPS))  # as many full steps as the default
    methods = []
    for name, method in (("calibrated in 12 runs", calibrate), ("exhaustive search", search)):
        config, cost = method(subject.calibration, default, harness.STEPS, budget)
        label = f"ours: {name} ({cost['sampler_calls']} runs, {cost['seconds']:.0f} s)"
        print(f"{subject.name:12s} {label}: full steps {list(config.full_steps)}", flush=True)
        methods.append(Method(label, "ours", config=config))
    return methods


def at_equal_full_steps(default: TaylorSeerConfig) -> Callable[[list[Row]], list[Method]]:
    """Follow-up rows of ours at the full-step counts that adaptive methods chose: the paper's
    even placement at each adaptive row's count, the default's late-dense placement at each peer's."""

    def follow_ups(rows: list[Row]) -> list[Method]:
        methods: dict[str, Method] = {}
        for row in rows:
            count = row.full_steps
            if count is None or count >= harness.STEPS:
                continue
            if row.method.startswith("ours: adaptive"):
                label = f"ours: even placement, {count} full steps"
                steps = spread(harness.STEPS, count, min(default.effective_warmup, count))
            elif row.kind == "peer":
                label = f"ours: late-dense placement, {count} full steps"
                steps = default.spread_placement(harness.STEPS, count)
            else:
                continue
            config = with_full_steps(default, steps, harness.STEPS)
            methods.setdefault(label, Method(label, "ours", config=config))
        return list(methods.values())

    return follow_ups


def write(
    out: Path, results: dict[str, list[Row]], settings: dict, seconds: float, margin_rows: Sequence[dict] = ()
) -> None:
    """RESULTS.md (a table per model, the margins at equal full steps, the comparisons, what the
    FID-proxy can tell apart, the plot), bench.json and pareto.png in the folder `out`."""
    out.mkdir(parents=True, exist_ok=True)
    report.save_json(out / "bench.json", results, settings, margin_rows)
    report.pareto_plot(out / "pareto.png", results)
    parts = [
        "# Benchmark results",
        "",
        f"Regenerate: `{settings['command']}` ({seconds / 60:.0f} min on this machine).",
        "",
    ]
    for name, rows in results.items():
        parts += [f"## {name}", "", report.markdown_table(rows), ""]
    if margin_rows:
        parts += ["## Every peer at our number of full steps, 50 and 28 steps", "", margins.EXPLANATION, ""]
        parts += [*margins.summary(margin_rows), "", "Every row:", "", *margins.every_row(margin_rows), ""]
    parts += ["## Comparisons", ""] + [f"- {line}" for line in report.comparisons(results)]
    samples = settings.get("samples")
    fid = report.fid_note(results, samples)
    if fid:
        parts += ["", "## FID-proxy", "", FID_TEXT, ""] + [f"- {line}" for line in fid]
    elif samples is not None and samples < subjects_fid_samples():
        needs = subjects_fid_samples()
        parts += ["", f"No FID-proxy: it needs {needs} samples or more, this run had {samples}."]
    if "flux-large" in results:
        parts += ["", "## flux-large", "", FLUX_LARGE_TEXT]
    parts += ["", "![PSNR vs FLOPs speedup](pareto.png)", ""]
    (out / "RESULTS.md").write_text("\n".join(parts))


FLUX_LARGE_TEXT = (
    "flux-large is a FLUX-architecture transformer with random weights and 1024 image tokens: it "
    "is here to measure speed where compute dominates (latency against FLOPs), not fidelity. Its "
    "PSNR rows do not carry over to trained models. With random weights its blocks make about 5% "
    "of its output: the rest goes from the latents through the embedding and the final layer "
    "without touching a block (`python -m taylorseer.bench.block_share`, [BLOCKS.md](BLOCKS.md)). "
    "Per-module forecasts compute that path exactly and forecast only the blocks' part, so their "
    "error is about 18 times (25 dB) smaller than that of the whole-output default, which "
    "forecasts all of it; hence the gap between the two rows above. In the trained models the "
    "blocks make 76% to 201% of the output, and the per-module rows of the other models lie within "
    "a few dB of the default, above or below. "
    '`granularity="module"` is one setting away when the memory is there.'
)


FID_TEXT = (
    "The FID-proxy is the Frechet distance between the features of the bundled digit classifier for "
    "the samples and for real held-out digits (lower = closer to real digits). It compares each method "
    "with real digits, not with full compute, and on these 16x16 digit models it was seen to drop as "
    "caching gets more aggressive, so a lower value need not mean a better method: read it next to the "
    "PSNR. Its sampling noise at this number of samples:"
)


def subjects_fid_samples() -> int:
    """The fewest samples the FID-proxy is computed on (`subjects.FID_MIN_SAMPLES`)."""
    from taylorseer.bench.subjects import FID_MIN_SAMPLES

    return FID_MIN_SAMPLES


def main(args: argparse.Namespace) -> int:
    """`taylorseer bench`: every method on each of `args.models`; writes into `args.out`."""
    from taylorseer.bench import subjects

    start = time.perf_counter()
    if args.samples < subjects.FID_MIN_SAMPLES:
        print(
            f"note: no FID-proxy: it fits a covariance of {subjects.FID_MIN_SAMPLES - 1} classifier features "
            f"and needs --samples {subjects.FID_MIN_SAMPLES} or more, got {args.samples}"
        )
    results: dict[str, list[Row]] = {}
    for name in args.models:
        if name == "flux-large":
            subject = subjects.large_flux_subject(seed=args.seed)
        else:
            subject = subjects.bundled_subject(name, args.samples, args.seed, args.scorer)
        # the default as apply_taylorseer resolves it for this model: its rows and peers follow it
        default = TaylorSeerConfig(sampler=model_sampler(subject.transformer))
        follow_ups = None if name == "flux-large" else at_equal_full_steps(default)
        methods = methods_for(subject, default, not args.no_peers)
        results[name] = harness.run(subject, methods, args.repeats, follow_ups=follow_ups)
    margin_rows = [
        row
        for name in args.models
        if name != "flux-large" and not args.no_peers
        for row in margins.measure(name, args.samples, args.seed)
    ]
    settings = dict(
        command=" ".join(["taylorseer bench", *args.argv]), samples=args.samples, seed=args.seed,
        repeats=args.repeats, steps=harness.STEPS, default=TaylorSeerConfig().to_dict(),
    )  # fmt: skip
    write(args.out, results, settings, time.perf_counter() - start, margin_rows)
    print(f"wrote {args.out / 'RESULTS.md'}, bench.json, pareto.png")
    return 0


def sweep(args: argparse.Namespace) -> int:
    """The paper-style table on the bundled DiT: intervals 3-8 x orders 0-4 of the official preset."""
    from torch.utils.flop_counter import FlopCounterMode

    from taylorseer.api import apply_taylorseer
    from taylorseer.bench import subjects

    start = time.perf_counter()
    subject = subjects.bundled_subject("dit-digits", args.samples, args.seed)

    def measured(config: TaylorSeerConfig | None) -> tuple[float, dict[str, float]]:
        with FlopCounterMode(display=False) as counter:
            if config is None:
                images = subject.sample(harness.STEPS)
            else:
                with apply_taylorseer(
                    subject.transformer, dataclasses.replace(config, num_steps=harness.STEPS)
                ):
                    images = subject.sample(harness.STEPS)
        return counter.get_total_flops(), subject.scorer(images)

    base_flops, base = measured(None)
    intervals, orders = range(3, 9), range(5)
    table: dict[tuple[int, int], tuple[float, dict[str, float]]] = {}
    for interval in intervals:
        for order in orders:
            flops, scores = measured(
                TaylorSeerConfig.official(interval=interval, order=order, first_enhance=2)
            )
            table[interval, order] = (base_flops / flops, scores)
            print(f"N={interval} O={order}: {base_flops / flops:.2f}x FLOPs, FID {scores['fid_proxy']:.2f}")
    lines = [
        "# Interval x order sweep on dit-digits (official preset, DDIM 50, CFG 4)",
        "",
        f"Each cell: FLOPs speedup / FID-proxy over {args.samples} samples (lower = closer to real "
        f"digits). Full compute: FID-proxy {base['fid_proxy']:.2f}, accuracy {base['accuracy']:.1%}. "
        f"The FID-proxy's sampling noise at this number of samples is +-{base['fid_proxy_noise']:.2f} "
        "(bootstrap standard deviation for full compute): differences smaller than about twice that do "
        "not separate two cells.",
        "",
        f"Regenerate: `{' '.join(['taylorseer bench', *args.argv])}` "
        f"({(time.perf_counter() - start) / 60:.0f} min on this machine).",
        "",
        "| interval | " + " | ".join(f"order {o}" for o in orders) + " |",
        "|---|" + "---:|" * len(orders),
    ]
    for interval in intervals:
        cells = [f"{table[interval, o][0]:.2f}x / {table[interval, o][1]['fid_proxy']:.2f}" for o in orders]
        lines.append(f"| {interval} | " + " | ".join(cells) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "SWEEP.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'SWEEP.md'}")
    return 0
