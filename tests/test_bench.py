"""The benchmark harness on a tiny random DiT, and its report (the real runs are in docs/RESULTS.md)."""

import json
import math
import re

import pytest
import torch

from taylorseer import TaylorSeerConfig
from taylorseer.bench import harness, report, runner
from taylorseer.calibrate import with_full_steps
from taylorseer.models.dit import sample
from toy_models import tiny_dit

pytestmark = pytest.mark.integration


def tiny_subject() -> harness.Subject:
    model = tiny_dit()
    labels = torch.tensor([1, 2])
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def run(steps: int) -> torch.Tensor:
        return sample(model, noise, labels, steps=steps, cfg_scale=2.0).clamp(-1, 1)

    return harness.Subject("tiny-dit", "dit", model, run)


def test_bench_rows_reports_and_comparisons(tmp_path):
    subject = tiny_subject()
    calibrated = with_full_steps(TaylorSeerConfig(), [0, 1, 9, 17, 24, 31, 36, 40, 44, 47, 48, 49], 50)
    methods = harness.our_methods("dit", calibrated=calibrated)
    follow_ups = runner.at_equal_full_steps(TaylorSeerConfig())
    rows = harness.run(subject, methods, repeats=1, log=lambda line: None, follow_ups=follow_ups)
    by_label = {row.method: row for row in rows}
    assert [row.method for row in rows][: len(methods)] == [m.label for m in methods]
    adaptive = [row for row in rows if row.method.startswith("ours: adaptive")]
    assert len(adaptive) == 3 and all(row.full_steps < 50 for row in adaptive)
    for row in adaptive:  # followed by the paper's even placement of as many full steps
        even = by_label[f"ours: even placement, {row.full_steps} full steps"]
        assert even.full_steps == row.full_steps and even.flops < row.flops  # the probes cost FLOPs
    assert by_label["ours: calibrated"].full_steps == 12
    full, ours = by_label["full compute"], by_label["ours: default"]
    assert math.isinf(full.metrics["psnr"]) and full.full_steps == 50
    assert full.flops / ours.flops > 3  # 12 of 50 steps run the model
    assert 10 < ours.metrics["psnr"] < math.inf and 0 < ours.metrics["ssim"] < 1
    fewer = next(row for row in rows if row.kind == "fewer-steps")
    assert fewer.full_steps == ours.full_steps  # the honest baseline: equal model evaluations
    module = by_label["ours: granularity module"]
    assert module.cache_bytes > ours.cache_bytes > 0  # the whole-output cache is the leanest

    results = {"tiny-dit": rows}
    runner.write(tmp_path, results, {"command": "taylorseer bench --test"}, seconds=1.0)
    table = (tmp_path / "RESULTS.md").read_text()
    assert all(m.label in table for m in methods) and "taylorseer bench --test" in table
    assert (
        json.loads((tmp_path / "bench.json").read_text())["models"]["tiny-dit"][0]["method"] == "full compute"
    )
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Comparisons" in table and not re.search(r"\b(targets?|met|missed)\b", table, re.IGNORECASE)
    comparisons = report.comparisons(results)
    margin = ours.metrics["psnr"] - fewer.metrics["psnr"]
    assert any("as many model evaluations" in line and f"{margin:+.2f} dB" in line for line in comparisons)
    assert any(line.startswith("tiny-dit: lean cache") for line in comparisons)
    assert any(line.startswith("tiny-dit: calibrated schedule") for line in comparisons)
    assert sum("adaptive" in line and "a fixed placement" in line for line in comparisons) == 3


def _row(method: str, kind: str, flops: int, psnr: float, fid: float, noise: float) -> harness.Row:
    metrics = dict(psnr=psnr, fid_proxy=fid, fid_proxy_noise=noise)
    return harness.Row(method, kind, 10, flops, 1.0, None, None, metrics)


@pytest.mark.parametrize(("spread", "separates"), [(0.5, False), (3.0, True)])
def test_the_report_says_whether_the_fid_proxy_separates_the_methods(spread, separates, tmp_path):
    rows = [
        _row("full compute", "full", 100, math.inf, 20.0, 0.4),
        _row("ours: default", "ours", 25, 40.0, 20.0 - spread, 0.4),
    ]
    (line,) = report.fid_note({"m": rows}, samples=100)
    assert f"from {20 - spread:.2f} to 20.00" in line and "+-0.40" in line
    assert ("does not separate them" in line) is not separates
    runner.write(tmp_path, {"m": rows}, {"command": "c", "samples": 100}, seconds=1.0)
    assert "## FID-proxy" in (tmp_path / "RESULTS.md").read_text()


def test_too_few_samples_for_the_fid_proxy_leave_its_column_out(tmp_path):
    from taylorseer.bench import subjects

    few = subjects.bundled_subject("dit-digits", subjects.FID_MIN_SAMPLES - 1, seed=0)
    images = torch.rand(subjects.FID_MIN_SAMPLES - 1, 1, 16, 16) * 2 - 1
    assert set(few.scorer(images)) == {"accuracy"}
    enough = subjects.bundled_subject("dit-digits", subjects.FID_MIN_SAMPLES, seed=0)
    scores = enough.scorer(torch.rand(subjects.FID_MIN_SAMPLES, 1, 16, 16) * 2 - 1)
    assert scores["fid_proxy"] > 0 and scores["fid_proxy_noise"] > 0
    rows = [harness.Row("full compute", "full", 50, 100, 1.0, None, None, dict(psnr=math.inf, accuracy=1.0))]
    runner.write(tmp_path, {"m": rows}, {"command": "c", "samples": 3}, seconds=1.0)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "FID-proxy |" not in text and f"needs {subjects.FID_MIN_SAMPLES} samples or more" in text


def test_peer_rows_run_through_the_same_harness():
    pytest.importorskip("cache_dit")
    subject = tiny_subject()
    default = TaylorSeerConfig()
    methods = [
        harness.Method("full compute", "full"),
        harness.Method("ours: default", "ours", config=default),
        *runner.peer_methods("dit", default),
    ]
    follow_ups = runner.at_equal_full_steps(TaylorSeerConfig())
    rows = harness.run(subject, methods, repeats=1, log=lambda line: None, follow_ups=follow_ups)
    by_label = {row.method: row for row in rows}
    peers = [row for row in rows if row.kind == "peer"]
    for row in peers:  # ours at each peer's own full-step count
        if row.full_steps < 50:
            mine = by_label[f"ours: late-dense placement, {row.full_steps} full steps"]
            assert mine.full_steps == row.full_steps
    assert any("ours (late-dense placement)" in line for line in report.comparisons({"tiny-dit": rows}))
    rows = [rows[0], *peers]
    same = by_label["diffusers TaylorSeerCache (our modules, schedule)"]
    assert same.full_steps is not None and 1 < same.full_steps < 50  # counted per model call
    assert same.full_steps == by_label["ours: default"].full_steps  # "our schedule": as many as ours
    assert rows[0].flops / same.flops > 2
    for row in rows[1:]:
        assert row.kind == "peer" and row.metrics["psnr"] > 0  # inf where a peer found nothing to skip
    assert same.metrics["psnr"] < math.inf


def tiny_clip(folder):
    """A random CLIP with a character-level vocabulary, saved as a local model folder."""
    import json
    import string

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = list(string.ascii_lowercase + string.digits)
    vocab = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    layers = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    text = dict(layers, vocab_size=len(vocab), max_position_embeddings=32, bos_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    vision = dict(layers, image_size=32, patch_size=8)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = CLIPProcessor(images, tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor


def test_clip_scorer_is_the_clip_cosine_of_images_and_prompts(tmp_path):
    from taylorseer.bench.subjects import clip_scorer

    model, processor = tiny_clip(tmp_path)
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    prompts = [f"a handwritten digit {k}" for k in range(3)]
    score = clip_scorer(tmp_path)(images, prompts)["clip_score"]
    pixels = ((images + 1) * 127.5).round().to(torch.uint8).expand(-1, 3, -1, -1)
    with torch.no_grad():
        out = model(**processor(text=prompts, images=list(pixels), return_tensors="pt", padding=True))
    cosine = (out.image_embeds * out.text_embeds).sum(-1)
    assert score == pytest.approx(100 * cosine.clamp(min=0).mean().item(), rel=1e-4)
    with pytest.raises(ValueError, match="not a CLIP model folder"):
        clip_scorer(tmp_path / "missing")


def test_the_margins_at_equal_full_steps_go_into_results_and_json(tmp_path):
    rows = [harness.Row("full compute", "full", 50, 100, 1.0, None, None, dict(psnr=math.inf))]
    margin_rows = [
        dict(model="m", steps=28, interval=3, method="ours: default", full_steps=11, psnr=48.5),
        dict(model="m", steps=28, interval=3, method="peer a", full_steps=11, psnr=44.0),
        dict(model="m", steps=28, interval=3, method="peer b", full_steps=11, psnr=41.0),
    ]
    runner.write(tmp_path, {"m": rows}, {"command": "c", "samples": 3}, 1.0, margin_rows)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| m | 28 | 11 | 48.50 | peer a (11 full) | 44.00 | +4.50 |" in text  # the best peer
    assert "| m | 28 | peer b | 11 | 41.00 |" in text  # and every row
    assert json.loads((tmp_path / "bench.json").read_text())["margins"] == margin_rows
    runner.write(tmp_path / "none", {"m": rows}, {"command": "c", "samples": 3}, 1.0)
    assert "50 and 28 steps" not in (tmp_path / "none" / "RESULTS.md").read_text()


@pytest.mark.parametrize(("no_peers", "measured"), [(False, ["dit-digits"]), (True, [])])
def test_the_bench_measures_the_margins_on_each_trained_model_unless_peers_are_off(
    no_peers, measured, tmp_path, monkeypatch
):
    import argparse

    from taylorseer.bench import margins, subjects

    full = harness.Row("full compute", "full", 50, 100, 1.0, None, None, dict(psnr=math.inf))
    monkeypatch.setattr(subjects, "bundled_subject", lambda name, *args: tiny_subject())
    monkeypatch.setattr(subjects, "large_flux_subject", lambda seed: tiny_subject())
    monkeypatch.setattr(runner, "methods_for", lambda *args: [])
    monkeypatch.setattr(harness, "run", lambda *args, **kwargs: [full])
    seen = []
    rows = [
        dict(model="dit-digits", steps=28, interval=3, method=method, full_steps=11, psnr=psnr)
        for method, psnr in (("ours: default", 48.0), ("a peer", 44.0))
    ]
    monkeypatch.setattr(margins, "measure", lambda name, samples, seed: seen.append(name) or rows)
    arguments = dict(samples=2, seed=0, scorer=None, repeats=1, argv=[], no_peers=no_peers)
    args = argparse.Namespace(models=["dit-digits", "flux-large"], out=tmp_path / "out", **arguments)
    assert runner.main(args) == 0
    assert seen == measured  # the large random model has no peers' margins to measure
    assert json.loads((tmp_path / "out" / "bench.json").read_text())["margins"] == rows * len(measured)
