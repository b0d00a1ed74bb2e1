"""Scale-out on torch.distributed: 2 CPU processes (gloo, loopback only) against one process.

One spawn runs every scenario on tiny random models and saves what each rank saw; the tests
compare that with the same sampling done here in a single process. A second spawn runs
`taylorseer generate --context-parallel ulysses` on a tiny FLUX pipeline folder, as torchrun would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.flop_counter import FlopCounterMode

pytest.importorskip("diffusers")
from taylorseer import TaylorSeerConfig, apply_taylorseer, distributed  # noqa: E402
from taylorseer.api import maybe_applied  # noqa: E402
from taylorseer.cli import checks  # noqa: E402
from taylorseer.core import forecast  # noqa: E402
from taylorseer.models import flux_digits  # noqa: E402
from taylorseer.models.bundled import DigitGenerator  # noqa: E402
from taylorseer.models.dit import DiT  # noqa: E402
from taylorseer.models.dit import sample as dit_sample  # noqa: E402
from taylorseer.runtime import probe as probe_module  # noqa: E402

WORLD = 2
HANG_GUARD_S = 900  # only a deadlocked group takes this long: kill it rather than hang the suite
STEPS = 10
CLASSES = [3, 1, 4]  # two rows: 6 samples, 3 per rank
LATENT_SCALE = 300.0
ATOL = 1e-5  # round-off of another batch composition: measured <= 4e-7 (docs/DISTRIBUTED.md)
DIT_CACHE = TaylorSeerConfig(interval=3, order=1, schedule="fixed")  # granularity "model"; 4 of 10 full
MODULE_CACHE = TaylorSeerConfig(interval=3, order=1, schedule="fixed", granularity="module")


def tiny_dit() -> DiT:
    """A depth-2 DiT whose adaLN-Zero (and zero-initialised output) weights are perturbed."""
    torch.manual_seed(0)
    model = DiT(
        input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10
    )
    zero_init = [block.adaLN_modulation[-1] for block in model.blocks]
    zero_init += [model.final_layer.adaLN_modulation[-1], model.final_layer.linear]
    with torch.no_grad():
        for linear in zero_init:
            linear.weight.normal_(0.0, 0.1)
            linear.bias.normal_(0.0, 0.1)
    return model.eval()


def tiny_generator() -> DigitGenerator:
    model = tiny_dit()

    def run(noise, labels, **options):
        # an untrained DiT ends at latents in the hundreds: scale them to where images do not clip
        return dit_sample(model, noise, labels, sampler="ddim", **options) / LATENT_SCALE

    return DigitGenerator("tiny-dit", model, 4.0, run)


def tiny_flux() -> tuple[torch.nn.Module, flux_digits.ClassConditioning]:
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=16, axes_dims_rope=(2, 2, 4),
    )  # fmt: skip
    return transformer.eval(), flux_digits.ClassConditioning(16, 16).eval()


def inputs(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    return torch.randn(n, 4, 8, 8, generator=generator), torch.tensor([2, 5, 8, 1][:n])


def flux_with_stats(transformer, conditioning, cache: TaylorSeerConfig | None) -> tuple[torch.Tensor, int]:
    """flux_digits.sample (CFG as one batched call), and the cache's bytes at the end."""
    noise, labels = inputs()
    if cache is None:
        return flux_digits.sample(transformer, conditioning, noise, labels, steps=STEPS), 0
    with apply_taylorseer(transformer, dataclasses.replace(cache, num_steps=STEPS)) as handle:
        latents = flux_digits.sample(transformer, conditioning, noise, labels, steps=STEPS)
        return latents, handle.stats["cache_bytes"]


ADAPTIVE_CACHE = TaylorSeerConfig(schedule="adaptive", interval=4, order=1, error_budget=0.05)


def adaptive_with_distances(transformer, conditioning) -> dict:
    """Adaptive refresh on flux_digits: the probe's distances (over this rank's tokens alone, and as
    decided on), the full steps, and the latents."""
    distances = []
    measured = probe_module.relative_distance

    def recording(actual, predicted, group=None):
        decided = measured(actual, predicted, group)
        distances.append((float(measured(actual, predicted)), float(decided)))
        return decided

    probe_module.relative_distance = recording
    try:
        noise, labels = inputs()
        with apply_taylorseer(transformer, dataclasses.replace(ADAPTIVE_CACHE, num_steps=STEPS)) as handle:
            latents = flux_digits.sample(transformer, conditioning, noise, labels, steps=STEPS)
            full_steps = handle.stats["full_steps"]
    finally:
        probe_module.relative_distance = measured
    return dict(distances=distances, full_steps=full_steps, latents=latents)


ORDER_2_CACHE = dataclasses.replace(MODULE_CACHE, order=2, term_ratio=0.5)


def forecasts_with_groups(transformer, conditioning) -> dict:
    """flux_digits at order 2 with a term ratio (per module): the latents, and the process group
    that each forecast was given."""
    groups = []
    predict = forecast.predict

    def recording(*args, **kwargs):
        groups.append(kwargs.get("group"))
        return predict(*args, **kwargs)

    forecast.predict = recording
    try:
        latents, _ = flux_with_stats(transformer, conditioning, ORDER_2_CACHE)
    finally:
        forecast.predict = predict
    return dict(latents=latents, grouped=[group is not None for group in groups])


TERM_CUT_POINTS = [2.0, 1.0, 0.0]  # forecast at 3.0: Newton weights 1, 1, 2


def term_cut_factors() -> list[torch.Tensor]:
    """c_0, c_1, c_2 of a feature of 4 values whose order-2 term is small on the first half (kept
    there alone) and large on the second (cut there, and over the whole)."""
    return [torch.zeros(4), torch.ones(4), torch.tensor([0.01, 0.01, 10.0, 10.0])]


def _scenarios(rank: int) -> dict:
    saved: dict = {}
    # gather: uneven and empty parts
    part = torch.full((rank + 1, 3), float(rank))
    saved["gather_uneven"] = distributed.gather(part)
    saved["gather_empty"] = distributed.gather(torch.ones(2, 3) if rank else torch.empty(0, 0))

    # (1) data-parallel generation, without and with the cache
    full, cached, columns = distributed.generate_data_parallel(
        tiny_generator(), DIT_CACHE, STEPS, CLASSES, seed=11
    ) or (None, None, None)
    if rank == 0:
        saved["dp"] = dict(full=dataclasses.asdict(full), cached=dataclasses.asdict(cached), columns=columns)

    # (2) CFG-parallel: DiT and FLUX, without and with each rank's own cache
    noise, labels = inputs()
    for name, cache in (("none", None), ("model", DIT_CACHE), ("module", MODULE_CACHE)):
        model = tiny_dit()
        with maybe_applied(model, cache, STEPS):
            saved[f"cfg_dit_{name}"] = distributed.cfg_parallel_dit(model, noise, labels, STEPS, 4.0)
        transformer, conditioning = tiny_flux()
        with maybe_applied(transformer, cache, STEPS):
            saved[f"cfg_flux_{name}"] = distributed.cfg_parallel_flux(
                transformer, conditioning, noise, labels, STEPS, 3.0
            )

    # (3) diffusers' context parallelism (Ulysses) under a per-rank cache
    for name, cache in (("none", None), ("module", MODULE_CACHE)):
        transformer, conditioning = tiny_flux()
        distributed.enable_context_parallel(transformer)
        saved[f"cp_{name}"] = flux_with_stats(transformer, conditioning, cache)
    transformer, conditioning = tiny_flux()
    distributed.enable_context_parallel(transformer)
    saved["cp_adaptive"] = adaptive_with_distances(transformer, conditioning)
    transformer, conditioning = tiny_flux()
    distributed.enable_context_parallel(transformer)
    saved["cp_order_2"] = forecasts_with_groups(transformer, conditioning)
    # (4) the forecast's term cut with each rank holding half of every factor
    shards = [factor.chunk(WORLD)[rank] for factor in term_cut_factors()]
    world = torch.distributed.group.WORLD
    saved["term_cut"] = forecast.predict(shards, TERM_CUT_POINTS, 3.0, "newton", term_ratio=0.5, group=world)
    transformer, conditioning = tiny_flux()
    distributed.enable_context_parallel(transformer, ring_degree=2)
    try:
        saved["cp_ring"] = flux_with_stats(transformer, conditioning, None)[0]
    except ValueError as error:
        saved["cp_ring"] = str(error)
    return saved


def _as_torchrun(rank: int, port: int) -> None:
    """This process as rank `rank` of WORLD, in the environment torchrun would give it."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo",  # loopback only
    )  # fmt: skip
    torch.set_num_threads(1)


def _worker(rank: int, port: int, folder: str) -> None:
    _as_torchrun(rank, port)
    with distributed.process_group() as (joined_rank, world):
        assert (joined_rank, world) == (rank, WORLD)
        torch.save(_scenarios(rank), Path(folder) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spawn(worker, *arguments) -> None:
    """`worker(rank, port, *arguments)` on WORLD spawned processes; a deadlocked group is killed."""
    start = time.monotonic()
    context = mp.start_processes(
        worker, (_free_port(), *arguments), nprocs=WORLD, join=False, start_method="spawn"
    )
    while not context.join(timeout=max(0.1, HANG_GUARD_S - (time.monotonic() - start))):
        if time.monotonic() - start > HANG_GUARD_S:
            for process in context.processes:
                with contextlib.suppress(Exception):
                    process.kill()
            pytest.fail(f"the {WORLD} ranks did not finish within {HANG_GUARD_S} s: deadlocked")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("ranks")
    _spawn(_worker, str(folder))
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


pytestmark = [pytest.mark.system, pytest.mark.usefixtures("one_thread")]


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float round-off, relative to the largest value (random DiT latents reach ~600)."""
    assert actual.shape == expected.shape
    scale = float(expected.abs().max())
    assert torch.isfinite(expected).all() and scale > 0.1  # a real signal to compare
    torch.testing.assert_close(actual, expected, rtol=0, atol=ATOL * max(1.0, scale))


def test_shard_splits_contiguously_and_gives_everything_back():
    indices = list(range(7))
    shares = [distributed.shard(indices, r, 3) for r in range(3)]
    assert shares == [[0, 1, 2], [3, 4], [5, 6]]
    assert distributed.shard(indices[:1], 1, 2) == []
    with pytest.raises(ValueError, match="rank"):
        distributed.shard(indices, 3, 3)


def test_gather_concatenates_uneven_and_empty_parts_on_rank_0_only(ranks):
    assert torch.equal(ranks[0]["gather_uneven"], torch.tensor([[0.0] * 3, [1.0] * 3, [1.0] * 3]))
    assert torch.equal(ranks[0]["gather_empty"], torch.ones(2, 3))
    assert ranks[1]["gather_uneven"] is None and ranks[1]["gather_empty"] is None


def test_data_parallel_generation_equals_one_process(ranks):
    generator = tiny_generator()
    labels = torch.tensor(CLASSES * 2)
    noise = generator.noise(len(labels), 11)

    def images() -> torch.Tensor:
        return ((generator.sample(noise, labels, steps=STEPS) + 1) / 2).permute(0, 2, 3, 1)

    with FlopCounterMode(display=False) as counter:
        full = images()
    with apply_taylorseer(generator.transformer, dataclasses.replace(DIT_CACHE, num_steps=STEPS)) as handle:
        cached = images()
        full_steps = handle.stats["full_steps"]
    result = ranks[0]["dp"]
    assert result["columns"] == len(CLASSES)
    close(result["full"]["images"], full)
    close(result["cached"]["images"], cached)
    assert (result["cached"]["images"] - result["full"]["images"]).abs().max() > 1e-4  # it forecast
    assert result["full"]["flops"] == counter.get_total_flops()  # summed over the ranks
    assert result["cached"]["full_steps"] == full_steps < STEPS
    assert result["cached"]["flops"] < result["full"]["flops"] / 2
    assert "dp" not in ranks[1]


@pytest.mark.parametrize("cache", ["none", "model", "module"])
def test_cfg_parallel_dit_equals_one_process(ranks, cache):
    config = {"none": None, "model": DIT_CACHE, "module": MODULE_CACHE}[cache]
    noise, labels = inputs()
    model = tiny_dit()
    with maybe_applied(model, config, STEPS):
        expected = dit_sample(model, noise, labels, STEPS, cfg_scale=4.0, sampler="ddim")
    for rank in ranks:
        close(rank[f"cfg_dit_{cache}"], expected)


@pytest.mark.parametrize("cache", ["none", "model", "module"])
def test_cfg_parallel_flux_equals_one_process(ranks, cache):
    config = {"none": None, "model": DIT_CACHE, "module": MODULE_CACHE}[cache]
    noise, labels = inputs()
    transformer, conditioning = tiny_flux()
    with maybe_applied(transformer, config, STEPS):
        expected = flux_digits.sample(transformer, conditioning, noise, labels, STEPS, 3.0)
    for rank in ranks:
        close(rank[f"cfg_flux_{cache}"], expected)
    if config is not None:  # the cache changed the result: the ranks really forecast
        assert (ranks[0][f"cfg_flux_{cache}"] - ranks[0]["cfg_flux_none"]).abs().max() > 1e-4


def test_context_parallel_equals_one_process_and_shards_the_cache(ranks):
    transformer, conditioning = tiny_flux()
    full, _ = flux_with_stats(transformer, conditioning, None)
    cached, single_bytes = flux_with_stats(transformer, conditioning, MODULE_CACHE)
    assert single_bytes > 0
    for rank in ranks:
        close(rank["cp_none"][0], full)
        latents, rank_bytes = rank["cp_module"]
        close(latents, cached)
        assert rank_bytes * WORLD == single_bytes  # each rank holds only its tokens' factors


def test_adaptive_refresh_decides_alike_on_every_rank_of_a_context_parallel_group(ranks):
    """Each rank probes its own half of the tokens; the distance is reduced over the group, so both
    ranks take the same decisions as one process that sees every token."""
    transformer, conditioning = tiny_flux()
    alone = adaptive_with_distances(transformer, conditioning)
    first, second = (rank["cp_adaptive"] for rank in ranks)
    local = [[distance for distance, _ in run["distances"]] for run in (first, second)]
    decided = [[distance for _, distance in run["distances"]] for run in (first, second)]
    assert local[0] != local[1]  # the shards differ: alone, the ranks would disagree
    assert decided[0] == decided[1]
    assert decided[0] == pytest.approx([d for d, _ in alone["distances"]], rel=1e-4)
    assert first["full_steps"] == second["full_steps"] == alone["full_steps"] < STEPS
    torch.testing.assert_close(first["latents"], alone["latents"], atol=ATOL, rtol=0)


def test_the_term_cut_is_decided_over_a_context_parallel_group(ranks):
    """Each rank holds half of each factor; the cut of the order-2 term is decided on the whole
    feature's norms, so the ranks forecast their halves as one process forecasts the whole."""
    factors = term_cut_factors()
    whole = forecast.predict(factors, TERM_CUT_POINTS, 3.0, "newton", term_ratio=0.5)
    assert torch.equal(whole, torch.ones(4))  # c_0 + c_1: the term is cut
    first = [factor.chunk(WORLD)[0] for factor in factors]
    first_alone = forecast.predict(first, TERM_CUT_POINTS, 3.0, "newton", term_ratio=0.5)
    assert not torch.equal(first_alone, whole.chunk(WORLD)[0])  # on its own, rank 0 would keep it
    for rank, part in zip(ranks, whole.chunk(WORLD)):
        torch.testing.assert_close(rank["term_cut"], part, rtol=0, atol=0)


def test_under_context_parallelism_every_forecast_decides_its_cut_over_the_group(ranks):
    """The wiring: each rank's forecasts get the group (what the group does: the test above)."""
    transformer, conditioning = tiny_flux()
    alone = forecasts_with_groups(transformer, conditioning)
    assert alone["grouped"] and not any(alone["grouped"])  # one process: no group
    for rank in ranks:
        assert rank["cp_order_2"]["grouped"] == [True] * len(alone["grouped"])
        close(rank["cp_order_2"]["latents"], alone["latents"])


def test_ring_attention_runs_or_fails_for_want_of_log_sum_exp_on_cpu(ranks):
    outcome = ranks[0]["cp_ring"]
    if isinstance(outcome, str):  # diffusers' native (CPU) attention cannot return the LSE ring needs
        assert "return_lse" in outcome
    else:
        close(outcome, flux_with_stats(*tiny_flux(), None)[0])


def test_context_parallel_refuses_a_cached_model_and_models_without_a_plan():
    transformer, _ = tiny_flux()
    with apply_taylorseer(transformer, TaylorSeerConfig()), pytest.raises(RuntimeError, match="before"):
        distributed.enable_context_parallel(transformer)
    with pytest.raises(ValueError, match="_cp_plan"):
        distributed.enable_context_parallel(tiny_dit())


def test_python_dash_m_runs_the_cli(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "taylorseer", "generate", "--help"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0 and "--classes" in done.stdout


def test_check_launch_refuses_odd_cfg_pairs_and_pipelines_without_context_parallel(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="even number of ranks"):
        checks.check_launch("dit-digits", bundled=True, cfg_parallel=True)
    with pytest.raises(ValueError, match="'some/pipeline'.*bundled models only.*--context-parallel"):
        checks.check_launch("some/pipeline", bundled=False)
    checks.check_launch("dit-digits", bundled=True)
    checks.check_launch("some/pipeline", bundled=False, context_parallel="ulysses")
    monkeypatch.setenv("WORLD_SIZE", "2")
    checks.check_launch("dit-digits", bundled=True, cfg_parallel=True)


def test_without_a_launcher_the_world_is_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    generator = tiny_generator()
    with distributed.process_group() as (rank, world):
        full, cached, columns = distributed.generate_data_parallel(generator, None, 4, [2], seed=3)
    assert (rank, world, cached, columns) == (0, 1, None, 1)
    expected = generator.sample(generator.noise(2, 3), torch.tensor([2, 2]), steps=4)
    assert torch.equal(full.images, ((expected + 1) / 2).permute(0, 2, 3, 1))
    assert not torch.distributed.is_initialized()


# --- `taylorseer generate --context-parallel` on a diffusers pipeline folder -----------------

CP_ARGUMENTS = ["--steps", "6", "--interval", "3", "--height", "32", "--width", "32"]


def flux_pipeline_folder(folder: Path) -> Path:
    """test_pipelines' tiny FLUX pipeline with tiny CLIP and T5 text encoders (the CLI passes a
    prompt), saved with save_pretrained; its 64 image and 512 text tokens split over 2 ranks."""
    import diffusers
    import transformers

    from tiny_pipelines import TEXT, WIDTH, WORDS, _tokenizer, build_flux

    pipe = build_flux(folder / "bare").pipe
    torch.manual_seed(0)
    clip = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=len(WORDS), hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=4, max_position_embeddings=TEXT, pad_token_id=0, bos_token_id=0,
            eos_token_id=1,
        )
    )  # fmt: skip
    t5 = transformers.T5EncoderModel(
        transformers.T5Config(
            vocab_size=len(WORDS), d_model=WIDTH, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
            relative_attention_num_buckets=8,
        )
    )  # fmt: skip
    encoders = dict(text_encoder=clip, tokenizer=_tokenizer(), text_encoder_2=t5, tokenizer_2=_tokenizer())
    diffusers.FluxPipeline(**(pipe.components | encoders)).save_pretrained(folder / "flux")
    return folder / "flux"


def _recording(save, record: Path):
    """`figure.save_side_by_side` that also saves its panels' images to `record`."""

    def save_and_record(path, panels, columns, title):
        torch.save([images for _, images in panels], record)
        save(path, panels, columns, title)

    return save_and_record


def _cli_worker(rank: int, port: int, folder: str, argv: list[str]) -> None:
    from taylorseer.cli import figure, main

    _as_torchrun(rank, port)
    figure.save_side_by_side = _recording(figure.save_side_by_side, Path(folder) / f"panels{rank}.pt")
    (Path(folder) / f"exit{rank}").write_text(str(main(argv)))


@pytest.fixture(scope="module")
def flux_folder(tmp_path_factory) -> Path:
    return flux_pipeline_folder(tmp_path_factory.mktemp("pipelines"))


def test_cli_context_parallel_writes_on_rank_0_what_one_process_writes(flux_folder, tmp_path, monkeypatch):
    from taylorseer.cli import figure, main

    written = tmp_path / "written"
    written.mkdir()
    argv = ["generate", "--model", str(flux_folder), *CP_ARGUMENTS]
    _spawn(
        _cli_worker,
        str(tmp_path),
        [*argv, "--output", str(written / "cp.png"), "--context-parallel", "ulysses"],
    )
    assert [(tmp_path / f"exit{rank}").read_text() for rank in range(WORLD)] == ["0"] * WORLD
    assert [path.name for path in written.iterdir()] == ["cp.png"]  # rank 0's, and nothing else
    assert not (tmp_path / "panels1.pt").exists()  # rank 1 saved no panels

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    record = tmp_path / "single.pt"
    monkeypatch.setattr(figure, "save_side_by_side", _recording(figure.save_side_by_side, record))
    assert main([*argv, "--output", str(tmp_path / "single.png")]) == 0
    (full, cached), (cp_full, cp_cached) = torch.load(record), torch.load(tmp_path / "panels0.pt")
    close(cp_full, full)
    close(cp_cached, cached)
    assert (cached - full).abs().max() > 1e-4  # the cache forecast
