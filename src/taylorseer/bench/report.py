"""Writing `taylorseer bench` results: JSON, a Markdown table per model, a Pareto plot, the
comparisons between methods and what the FID-proxy can tell apart."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from taylorseer.bench.harness import Row

COLUMNS = [
    ("full steps", lambda row, base: "" if row.full_steps is None else str(row.full_steps)),
    ("GFLOPs", lambda row, base: f"{row.flops / 1e9:.1f}"),
    ("FLOPs speedup", lambda row, base: f"{base.flops / row.flops:.2f}x"),
    ("latency (s)", lambda row, base: f"{row.latency_s:.3f}"),
    ("latency speedup", lambda row, base: f"{base.latency_s / row.latency_s:.2f}x"),
    (
        "cache memory",
        lambda row, base: "" if row.cache_bytes is None else f"{row.cache_bytes / 2**20:.2f} MiB",
    ),
    (
        "peak memory",
        lambda row, base: "" if row.peak_memory_bytes is None else f"{row.peak_memory_bytes / 2**20:.0f} MiB",
    ),
    ("PSNR (dB)", lambda row, base: _number(row.metrics.get("psnr"))),
    ("SSIM", lambda row, base: _number(row.metrics.get("ssim"), 4)),
    ("rel. L2", lambda row, base: _number(row.metrics.get("rel_l2"), 4)),
    ("accuracy", lambda row, base: _percent(row.metrics.get("accuracy"))),
    ("FID-proxy", lambda row, base: _number(row.metrics.get("fid_proxy"))),
    ("CLIP score", lambda row, base: _number(row.metrics.get("clip_score"))),  # only with --scorer
]


def _number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return ""
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def markdown_table(rows: list[Row]) -> str:
    """One model's rows; ratios are to the first row (full compute)."""
    base = rows[0]
    columns = [(name, cell) for name, cell in COLUMNS if any(cell(row, base) for row in rows)]
    lines = ["| method | " + " | ".join(name for name, _ in columns) + " |"]
    lines.append("|---|" + "---:|" * len(columns))
    for row in rows:
        lines.append(f"| {row.method} | " + " | ".join(cell(row, base) for _, cell in columns) + " |")
    return "\n".join(lines)


def save_json(
    path: Path, results: dict[str, list[Row]], settings: dict, margin_rows: Sequence[dict] = ()
) -> None:
    data = {
        "settings": settings,
        "models": {name: [row.as_dict() for row in rows] for name, rows in results.items()},
        "margins": list(margin_rows),  # every peer at our number of full steps (bench.margins)
    }
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")


MARKERS = {"full": "D", "ours": "o", "peer": "s", "fewer-steps": "^"}  # one marker per family of methods


def pareto_plot(path: Path, results: dict[str, list[Row]]) -> None:
    """PSNR against FLOPs speedup, one panel per model; each method a marker (its family: ours,
    peer, fewer steps), a colour and a number, named in the panel's legend. Rows whose PSNR is
    infinite (identical to full compute) are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    most = max(len(rows) for rows in results.values())
    figure, axes = plt.subplots(
        len(results), 1, figsize=(11, len(results) * max(4.0, 0.2 * most + 1.0)), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    colours = plt.get_cmap("tab20").colors + plt.get_cmap("tab20b").colors
    for axis, (name, rows) in zip(axes[:, 0], results.items()):
        base = rows[0]
        for k, row in enumerate(rows[1:], start=1):
            value = row.metrics.get("psnr", math.nan)
            if not math.isfinite(value):
                continue
            default = row.method == "ours: default"
            point = (base.flops / row.flops, value)
            axis.scatter(
                *point, label=f"{k}. {row.method}", color=colours[(k - 1) % len(colours)],
                marker="*" if default else MARKERS.get(row.kind, "x"), s=160 if default else 45,
                edgecolors="black", linewidths=0.4, zorder=3,
            )  # fmt: skip
            axis.annotate(str(k), point, xytext=(4, 3), textcoords="offset points", fontsize=7)
        axis.set_xlabel("FLOPs speedup vs full compute (x)")
        axis.set_ylabel("PSNR vs full compute (dB)")
        axis.set_title(f"{name} (o ours, s peers, ^ fewer steps; up and right is better)")
        axis.grid(alpha=0.3)
        if axis.collections:
            axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def comparisons(results: dict[str, list[Row]]) -> list[str]:
    """The margins between methods in this run: ours against the best peer and against plain
    sampling at equal model evaluations, the lean cache against the per-module one, the
    schedules against each other, and which peers our rows dominate."""
    lines = []
    for name, rows in results.items():
        ours = next((row for row in rows if row.method == "ours: default"), None)
        if ours is None:
            continue
        if name == "flux-large":  # random weights: only speed means something
            latency = rows[0].latency_s / ours.latency_s
            flops = rows[0].flops / ours.flops
            lines.append(
                f"{name}: latency speedup {latency:.2f}x for a FLOPs speedup of {flops:.2f}x "
                f"(the latency speedup is {latency / flops:.0%} of the FLOPs speedup)"
            )
            continue
        lines += _baselines(name, rows, ours)
        lines += _schedules(name, rows, ours)
    return lines


def fid_note(results: dict[str, list[Row]], samples: int) -> list[str]:
    """What the FID-proxy can tell apart in this run, per model: its sampling noise (bootstrap
    standard deviation of full compute's), and whether the methods' differences exceed it."""
    lines = []
    for name, rows in results.items():
        scored = [row for row in rows if "fid_proxy" in row.metrics]
        noise = rows[0].metrics.get("fid_proxy_noise")
        if not scored or noise is None:
            continue
        values = [row.metrics["fid_proxy"] for row in scored]
        spread = max(values) - min(values)
        verdict = (
            "the differences between methods are within twice that noise: at this sample size it does "
            "not separate them; PSNR, SSIM and rel. L2 against full compute do"
            if spread <= 2 * noise
            else "some differences between methods exceed twice that noise"
        )
        lines.append(
            f"{name}: FID-proxy from {min(values):.2f} to {max(values):.2f} across methods; its sampling "
            f"noise over {samples} samples is +-{noise:.2f} (bootstrap standard deviation); {verdict}"
        )
    return lines


def _baselines(name: str, rows: list[Row], ours: Row) -> list[str]:
    """Our default against the peers at equal compute, fewer-steps sampling, and per-module memory."""
    by_label = {row.method: row for row in rows}
    lines = []
    peers = [row for row in rows if row.kind == "peer" and "psnr" in row.metrics]
    # equal compute: peers that ran at most one full step more than ours
    equal = [row for row in peers if row.full_steps is not None and row.full_steps <= ours.full_steps + 1]
    if equal:
        best = max(equal, key=lambda row: row.metrics["psnr"])
        gap = ours.metrics["psnr"] - best.metrics["psnr"]
        lines.append(
            f"{name}: ours: default {_psnr(ours)} ({ours.full_steps} full steps) vs the best peer at equal "
            f"full steps, {best.method}, {_psnr(best)} ({best.full_steps} full steps): {gap:+.2f} dB"
        )
    for row in peers:
        if row not in equal:
            lines.append(
                f"{name}: {row.method} ran {row.full_steps} full steps (ours {ours.full_steps}): "
                f"{_psnr(row)} vs ours {_psnr(ours)}, at {row.flops / ours.flops:.2f}x our FLOPs"
            )
    fewer = next((row for row in rows if row.kind == "fewer-steps"), None)
    if fewer is not None:
        gap = ours.metrics["psnr"] - fewer.metrics["psnr"]
        lines.append(
            f"{name}: ours: default {_psnr(ours)} vs plain sampling with as many model evaluations, "
            f"{fewer.method}, {_psnr(fewer)}: {gap:+.2f} dB"
        )
    module = by_label.get("ours: granularity module")
    if module is not None and module.cache_bytes and ours.cache_bytes is not None:
        gap, share = ours.metrics["psnr"] - module.metrics["psnr"], ours.cache_bytes / module.cache_bytes
        lines.append(
            f"{name}: lean cache (ours: default) {_psnr(ours)} with {share:.1%} of the memory of the "
            f"per-module cache, {_psnr(module)}: {gap:+.2f} dB"
        )
    return lines


def _psnr(row: Row) -> str:
    return f"{row.metrics['psnr']:.2f} dB"


def _schedules(name: str, rows: list[Row], ours: Row) -> list[str]:
    """Calibrated and adaptive schedules against the paper's placement at as many full steps,
    ours against each peer at the peer's own full-step count, and Pareto dominance."""
    by_label = {row.method: row for row in rows}
    lines = []
    calibrated = by_label.get("ours: calibrated")
    if calibrated is not None and calibrated.full_steps == ours.full_steps:
        gap = calibrated.metrics["psnr"] - ours.metrics["psnr"]
        lines.append(
            f"{name}: calibrated schedule {_psnr(calibrated)} vs ours: default {_psnr(ours)}, both "
            f"{ours.full_steps} full steps: {gap:+.2f} dB"
        )
    for row in rows:
        if row.method.startswith("ours: adaptive"):
            # a fixed placement: ours: default if it runs no more full steps, or the even
            # spread of as many full steps, whichever scores higher
            even = by_label.get(f"ours: even placement, {row.full_steps} full steps")
            fixed = [r for r in (ours, even) if r is not None and r.full_steps <= row.full_steps]
            if fixed:
                best = max(fixed, key=lambda r: r.metrics["psnr"])
                gap = row.metrics["psnr"] - best.metrics["psnr"]
                lines.append(
                    f"{name}: {row.method}: {_psnr(row)} with {row.full_steps} full steps (FLOPs "
                    f"{rows[0].flops / row.flops:.2f}x, probes included) vs a fixed placement of at "
                    f"most as many full steps, {best.method} ({best.full_steps}): {_psnr(best)}: "
                    f"{gap:+.2f} dB"
                )
        if row.kind == "peer":
            mine = by_label.get(f"ours: late-dense placement, {row.full_steps} full steps")
            if mine is not None:
                gap = mine.metrics["psnr"] - row.metrics["psnr"]
                lines.append(
                    f"{name}: at {row.full_steps} full steps, ours (late-dense placement) {_psnr(mine)} vs "
                    f"{row.method} {_psnr(row)}: {gap:+.2f} dB"
                )
    for peer in (row for row in rows if row.method.startswith("cache-dit DBCache")):
        for curve in ("calibrated", "adaptive"):
            points = [row for row in rows if row.method.startswith(f"ours: {curve}")]
            better = [
                row for row in points
                if row.flops <= peer.flops and row.metrics["psnr"] >= peer.metrics["psnr"]
            ]  # fmt: skip
            verdict = (
                f"dominated by {max(better, key=lambda row: row.metrics['psnr']).method}"
                if better else "not dominated"
            )  # fmt: skip
            lines.append(
                f"{name}: {peer.method} ({_psnr(peer)} at {rows[0].flops / peer.flops:.2f}x FLOPs) vs our "
                f"{curve} rows: {verdict} (fewer FLOPs and higher PSNR)"
            )
    return lines
