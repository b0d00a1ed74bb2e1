"""Smoke test of the benchmark harness on a tiny random DiT (the real runs are in docs/RESULTS.md)."""

import json
import math

import pytest
import torch

from taylorseer import TaylorSeerConfig, bench, bench_report, bench_run
from taylorseer.models.dit import sample
from toy_models import tiny_dit


def tiny_subject() -> bench.Subject:
    model = tiny_dit()
    labels = torch.tensor([1, 2])
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def run(steps: int) -> torch.Tensor:
        return sample(model, noise, labels, steps=steps, cfg_scale=2.0).clamp(-1, 1)

    return bench.Subject("tiny-dit", "dit", model, run)


def test_bench_rows_reports_and_targets(tmp_path):
    subject = tiny_subject()
    methods = bench.our_methods("dit")
    rows = bench.run(subject, methods, repeats=1, log=lambda line: None)
    by_label = {row.method: row for row in rows}
    assert [row.method for row in rows] == [m.label for m in methods]
    full, ours = by_label["full compute"], by_label["ours: default"]
    assert math.isinf(full.metrics["psnr"]) and full.full_steps == 50
    assert full.flops / ours.flops > 3  # 12 of 50 steps run the model
    assert 10 < ours.metrics["psnr"] < math.inf and 0 < ours.metrics["ssim"] < 1
    fewer = next(row for row in rows if row.kind == "fewer-steps")
    assert fewer.full_steps == ours.full_steps  # the honest baseline: equal model evaluations
    module = by_label["ours: granularity module"]
    assert module.cache_bytes > ours.cache_bytes > 0  # the whole-output cache is the leanest

    results = {"tiny-dit": rows}
    bench_run.write(tmp_path, results, {"command": "taylorseer bench --test"}, seconds=1.0)
    table = (tmp_path / "RESULTS.md").read_text()
    assert all(m.label in table for m in methods) and "taylorseer bench --test" in table
    assert (
        json.loads((tmp_path / "bench.json").read_text())["models"]["tiny-dit"][0]["method"] == "full compute"
    )
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert any("fewer steps" in line and "target +3 dB" in line for line in bench_report.targets(results))


def test_peer_rows_run_through_the_same_harness():
    pytest.importorskip("cache_dit")
    subject = tiny_subject()
    methods = [bench.Method("full compute", "full"), *bench_run.peer_methods("dit", TaylorSeerConfig())]
    rows = bench.run(subject, methods, repeats=1, log=lambda line: None)
    by_label = {row.method: row for row in rows}
    same = by_label["diffusers TaylorSeerCache (our modules, schedule)"]
    assert same.full_steps is not None and 1 < same.full_steps < 50  # counted per model call
    assert rows[0].flops / same.flops > 2
    for row in rows[1:]:
        assert row.kind == "peer" and row.metrics["psnr"] > 0  # inf where a peer found nothing to skip
    assert same.metrics["psnr"] < math.inf
