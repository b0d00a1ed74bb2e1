"""Writing `taylorseer bench` results: JSON, a Markdown table per model, a Pareto plot, targets."""

from __future__ import annotations

import json
import math
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


def save_json(path: Path, results: dict[str, list[Row]], settings: dict) -> None:
    data = {
        "settings": settings,
        "models": {name: [row.as_dict() for row in rows] for name, rows in results.items()},
    }
    path.write_text(json.dumps(data, indent=2, default=float) + "\n")


def pareto_plot(path: Path, results: dict[str, list[Row]]) -> None:
    """PSNR vs latency speedup, one marker per method, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for axis, (name, rows) in zip(axes[0], results.items()):
        base = rows[0]
        for row in rows[1:]:
            value = row.metrics.get("psnr", math.nan)
            marker = {"ours": "o", "peer": "s", "fewer-steps": "^"}.get(row.kind, "x")
            axis.scatter(base.latency_s / row.latency_s, value, marker=marker, s=50)
            axis.annotate(row.method, (base.latency_s / row.latency_s, value), fontsize=7, xytext=(4, 2),
                          textcoords="offset points")  # fmt: skip
        axis.set_xlabel("latency speedup vs full compute")
        axis.set_ylabel("PSNR vs full compute (dB)")
        axis.set_title(name)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def targets(results: dict[str, list[Row]]) -> list[str]:
    """The issue's targets, each as met / missed by how much, from the rows of this run."""
    lines = []
    for name, rows in results.items():
        ours = next((row for row in rows if row.method == "ours: default"), None)
        if ours is None:
            continue
        if name == "flux-large":  # random weights: only speed means something
            latency = rows[0].latency_s / ours.latency_s
            flops = rows[0].flops / ours.flops
            lines.append(
                f"{name}: latency speedup {latency:.2f}x vs FLOPs speedup {flops:.2f}x: ratio "
                f"{latency / flops:.2f}, target >= 0.9 {'met' if latency >= 0.9 * flops else 'missed'}"
            )
            continue
        lines += _baseline_targets(name, rows, ours)
        lines += _schedule_targets(name, rows, ours)
    return lines


def _baseline_targets(name: str, rows: list[Row], ours: Row) -> list[str]:
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
            f"{name}: ours {_psnr(ours)} ({ours.full_steps} full steps) vs the best peer at equal compute, "
            f"{best.method}, {_psnr(best)} ({best.full_steps} full steps): {gap:+.2f} dB, target +3 dB "
            f"{'met' if gap >= 3 else 'missed'}"
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
        verdict = "met" if gap >= 3 else "missed"
        lines.append(f"{name}: ours vs {fewer.method}: {gap:+.2f} dB, target +3 dB {verdict}")
    module = by_label.get("ours: granularity module")
    if module is not None and module.cache_bytes and ours.cache_bytes is not None:
        gap, share = ours.metrics["psnr"] - module.metrics["psnr"], ours.cache_bytes / module.cache_bytes
        lines.append(
            f"{name}: lean cache (ours: default) {_psnr(ours)} with {share:.1%} of the memory of the "
            f"per-module cache, {_psnr(module)}: {gap:+.2f} dB, target within 3 dB at <= 10 % "
            f"{'met' if gap >= -3 and share <= 0.1 else 'missed'}"
        )
    return lines


def _psnr(row: Row) -> str:
    return f"{row.metrics['psnr']:.2f} dB"


def _schedule_targets(name: str, rows: list[Row], ours: Row) -> list[str]:
    """Calibrated and adaptive schedules against the paper's placement at as many full steps,
    ours against each peer at the peer's own full-step count, and Pareto dominance."""
    by_label = {row.method: row for row in rows}
    lines = []
    calibrated = by_label.get("ours: calibrated")
    if calibrated is not None and calibrated.full_steps == ours.full_steps:
        gap = calibrated.metrics["psnr"] - ours.metrics["psnr"]
        lines.append(
            f"{name}: calibrated schedule {_psnr(calibrated)} vs the paper's fixed schedule (ours: default) "
            f"{_psnr(ours)}, both {ours.full_steps} full steps: {gap:+.2f} dB, target +2 dB "
            f"{'met' if gap >= 2 else 'missed'}"
        )
    for row in rows:
        if row.method.startswith("ours: adaptive"):
            # the paper's placement: its own rule (ours: default) if it runs no more full steps,
            # or the even spread of as many full steps, whichever scores higher
            even = by_label.get(f"ours: even placement, {row.full_steps} full steps")
            fixed = [r for r in (ours, even) if r is not None and r.full_steps <= row.full_steps]
            if fixed:
                best = max(fixed, key=lambda r: r.metrics["psnr"])
                gap = row.metrics["psnr"] - best.metrics["psnr"]
                lines.append(
                    f"{name}: {row.method}: {_psnr(row)} with {row.full_steps} full steps (FLOPs "
                    f"{rows[0].flops / row.flops:.2f}x, probes included) vs the paper's placement, "
                    f"{best.method} ({best.full_steps} full steps): {_psnr(best)}: {gap:+.2f} dB, "
                    f"target +2 dB {'met' if gap >= 2 else 'missed'}"
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
