"""Orchestrating `taylorseer bench`: subjects x methods, then JSON, Markdown and a plot."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from taylorseer import bench, bench_report
from taylorseer.bench import Method, Row, Subject
from taylorseer.config import TaylorSeerConfig


def peer_methods(family: str, default: TaylorSeerConfig) -> list[Method]:
    """The peers as installed packages; none when a package is missing (said in the log)."""
    try:
        from taylorseer import peers
    except ImportError as error:
        print(f"peers skipped: {error}")
        return []
    return peers.methods(family, default)


def methods_for(subject: Subject, default: TaylorSeerConfig, with_peers: bool) -> list[Method]:
    methods = bench.our_methods(subject.family, default)
    return methods + (peer_methods(subject.family, default) if with_peers else [])


def write(out: Path, results: dict[str, list[Row]], settings: dict, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    bench_report.save_json(out / "bench.json", results, settings)
    bench_report.pareto_plot(out / "pareto.png", results)
    command = settings["command"]
    parts = [
        "# Benchmark results",
        "",
        f"Regenerate: `{command}` ({seconds / 60:.0f} min on this machine).",
        "",
    ]
    for name, rows in results.items():
        parts += [f"## {name}", "", bench_report.markdown_table(rows), ""]
    parts += ["## Targets", ""] + [f"- {line}" for line in bench_report.targets(results)]
    parts += ["", "![PSNR vs latency speedup](pareto.png)", ""]
    (out / "bench.md").write_text("\n".join(parts))


def main(args: argparse.Namespace) -> int:
    from taylorseer import bench_subjects

    start = time.perf_counter()
    default = TaylorSeerConfig()
    results: dict[str, list[Row]] = {}
    for name in args.models:
        if name == "flux-large":
            subject = bench_subjects.large_flux_subject(seed=args.seed)
        else:
            subject = bench_subjects.bundled_subject(name, args.samples, args.seed)
        results[name] = bench.run(subject, methods_for(subject, default, not args.no_peers), args.repeats)
    settings = dict(
        command="taylorseer bench " + " ".join(args.argv), samples=args.samples, seed=args.seed,
        repeats=args.repeats, steps=bench.STEPS, default=default.to_dict(),
    )  # fmt: skip
    write(args.out, results, settings, time.perf_counter() - start)
    print(f"wrote {args.out / 'bench.md'}, bench.json, pareto.png")
    return 0
