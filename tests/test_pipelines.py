"""Whole diffusers pipelines (FLUX, Wan, HunyuanVideo) with the cache applied to their transformer.

Each pipeline is built from tiny random components (1 layer, hidden 64, a few latent tokens),
saved to a temp folder and loaded back with `from_pretrained(folder)`. Wan gets a tiny UMT5 text
encoder and a word-level tokenizer built here; FLUX and HunyuanVideo are saved without text
encoders and get prompt embeddings instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from taylorseer import TaylorSeerConfig, apply_taylorseer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

GRANULARITIES = ("model", "module", "block", "stack")
TEXT, WIDTH = 8, 32  # text tokens and text embedding width
WORDS = ["<pad>", "</s>", "<unk>", "a", "photo", "of", "cat", "dog", "blurry"]
_HEADS = dict(num_attention_heads=4, attention_head_dim=16)  # hidden 64


@dataclass
class Case:
    """A loaded pipeline and how to call it: `inputs(**overrides)` gives `pipe(...)`'s keyword arguments."""

    pipe: Any
    inputs: Callable[..., dict[str, Any]]
    calls_per_step: int  # transformer calls per denoising step (2 with classifier-free guidance)

    @torch.no_grad()
    def __call__(self, steps: int, **overrides: Any) -> Tensor:
        generator = torch.Generator().manual_seed(0)
        output = self.pipe(**self.inputs(**overrides), num_inference_steps=steps, generator=generator)
        return output.images if hasattr(output, "images") else output.frames


def _reload(pipe: Any, folder: Any) -> Any:
    pipe.save_pretrained(folder)
    absent = {name: None for name, component in pipe.components.items() if component is None}  # not saved
    loaded = diffusers.DiffusionPipeline.from_pretrained(folder, **absent)
    assert type(loaded) is type(pipe)
    loaded.set_progress_bar_config(disable=True)
    return loaded


def _embeds(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def build_flux(folder: Any) -> Case:
    torch.manual_seed(0)
    transformer = diffusers.FluxTransformer2DModel(
        **_HEADS, patch_size=1, in_channels=8, num_layers=1, num_single_layers=1, joint_attention_dim=WIDTH,
        pooled_projection_dim=WIDTH, axes_dims_rope=(4, 6, 6),
    )  # fmt: skip
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=2, norm_num_groups=4, shift_factor=0.1,
    )  # fmt: skip  # latents of 2 channels at half resolution: 2x2 packed, 8 channels per token
    pipe = diffusers.FluxPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=None, tokenizer=None,
        text_encoder_2=None, tokenizer_2=None, transformer=transformer,
    )  # fmt: skip

    def inputs(**overrides: Any) -> dict[str, Any]:
        embeds = dict(
            prompt_embeds=_embeds(1, TEXT, WIDTH, seed=1), pooled_prompt_embeds=_embeds(1, WIDTH, seed=2)
        )
        return dict(embeds, height=32, width=32, guidance_scale=3.5, output_type="pt") | overrides

    return Case(_reload(pipe, folder), inputs, calls_per_step=1)


def _tokenizer() -> Any:
    vocab = {word: k for k, word in enumerate(WORDS)}
    words = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=words, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=TEXT
    )


def build_wan(folder: Any) -> Case:
    torch.manual_seed(0)
    encoder = transformers.UMT5EncoderModel(
        transformers.UMT5Config(
            vocab_size=len(WORDS), d_model=WIDTH, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
            relative_attention_num_buckets=8,
        )
    )  # fmt: skip
    transformer = diffusers.WanTransformer3DModel(
        **_HEADS, in_channels=4, out_channels=4, text_dim=WIDTH, freq_dim=32, ffn_dim=128, num_layers=1,
        rope_max_seq_len=32,
    )  # fmt: skip
    vae = diffusers.AutoencoderKLWan(
        base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
    )  # fmt: skip  # 4x in time, 8x in space
    pipe = diffusers.WanPipeline(
        tokenizer=_tokenizer(), text_encoder=encoder, vae=vae,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), transformer=transformer,
    )  # fmt: skip

    def inputs(**overrides: Any) -> dict[str, Any]:
        prompts = dict(prompt="a photo of a cat", negative_prompt="blurry", max_sequence_length=TEXT)
        return (
            dict(prompts, height=64, width=64, num_frames=5, guidance_scale=5.0, output_type="pt") | overrides
        )

    return Case(_reload(pipe, folder), inputs, calls_per_step=2)  # classifier-free guidance: 2 calls


def build_hunyuan_video(folder: Any) -> Case:
    torch.manual_seed(0)
    transformer = diffusers.HunyuanVideoTransformer3DModel(
        **_HEADS, in_channels=4, out_channels=4, num_layers=1, num_single_layers=1, num_refiner_layers=1,
        text_embed_dim=WIDTH, pooled_projection_dim=WIDTH, rope_axes_dim=(4, 6, 6),
    )  # fmt: skip
    vae = diffusers.AutoencoderKLHunyuanVideo(
        latent_channels=4, block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 3, up_block_types=("HunyuanVideoUpBlock3D",) * 3,
        spatial_compression_ratio=4, temporal_compression_ratio=4,
    )  # fmt: skip  # 4x in time and space
    pipe = diffusers.HunyuanVideoPipeline(
        text_encoder=None, tokenizer=None, transformer=transformer, vae=vae,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=None, tokenizer_2=None,
    )  # fmt: skip

    def inputs(**overrides: Any) -> dict[str, Any]:
        embeds = dict(
            prompt_embeds=_embeds(1, TEXT, WIDTH, seed=1), pooled_prompt_embeds=_embeds(1, WIDTH, seed=2),
            prompt_attention_mask=torch.ones(1, TEXT), negative_prompt_embeds=_embeds(1, TEXT, WIDTH, seed=3),
            negative_pooled_prompt_embeds=_embeds(1, WIDTH, seed=4),
            negative_prompt_attention_mask=torch.ones(1, TEXT),
        )  # fmt: skip
        return (
            dict(embeds, height=32, width=32, num_frames=5, true_cfg_scale=2.0, output_type="pt") | overrides
        )

    return Case(_reload(pipe, folder), inputs, calls_per_step=2)  # true CFG: cond and uncond calls


BUILDERS = {"flux": build_flux, "wan": build_wan, "hunyuan_video": build_hunyuan_video}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Callable[[str], Case]:
    built: dict[str, Case] = {}

    def case(name: str) -> Case:
        if name not in built:
            built[name] = BUILDERS[name](tmp_path_factory.mktemp(name))
        return built[name]

    return case


def relative_error(output: Tensor, reference: Tensor) -> float:
    return ((output - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_two_runs_with_different_step_counts(cases, name, granularity):
    """8 then 6 steps with one handle: forecasts happen, nothing stale carries over, remove() is exact."""
    case = cases(name)
    reference = {steps: case(steps) for steps in (8, 6)}
    config = TaylorSeerConfig(interval=3, granularity=granularity)
    handle = apply_taylorseer(case.pipe.transformer, config)
    try:
        outputs = {}
        for steps in (8, 6):
            outputs[steps] = case(steps)
            stats = handle.stats
            assert stats["steps"] == steps and stats["forecast_steps"] > 0
            assert stats["full_calls"] == case.calls_per_step * stats["full_steps"]
            assert stats["forecast_calls"] == case.calls_per_step * stats["forecast_steps"]
    finally:
        handle.remove()
    with apply_taylorseer(case.pipe.transformer, config):
        assert torch.equal(case(6), outputs[6])  # the second run is what a fresh cache gives
    for steps, output in outputs.items():
        assert torch.isfinite(output).all()
        assert not torch.equal(output, reference[steps])
        assert relative_error(output, reference[steps]) < 0.5
    assert torch.equal(case(8), reference[8])  # removed: the original pipeline, bit for bit


def test_flux_new_resolution_and_two_images_per_prompt(cases):
    """A second run at another resolution with num_images_per_prompt=2 reuses no state of the first."""
    case = cases("flux")
    config = TaylorSeerConfig(interval=3)
    other = dict(height=48, width=32, num_images_per_prompt=2)
    reference = case(6, **other)
    with apply_taylorseer(case.pipe.transformer, config) as handle:
        case(8)
        second = case(6, **other)
        assert handle.stats["steps"] == 6 and handle.stats["forecast_steps"] > 0
    with apply_taylorseer(case.pipe.transformer, config):
        assert torch.equal(case(6, **other), second)
    assert second.shape == (2, 3, 48, 32) and torch.isfinite(second).all()
    assert relative_error(second, reference) < 0.5


def test_generate_writes_a_video_of_a_video_pipeline(cases, tmp_path):
    """`generate.run_pipeline` on a video pipeline: first frames as images, both videos in one file."""
    iio = pytest.importorskip("imageio.v3")
    pytest.importorskip("imageio_ffmpeg", reason="diffusers' export_to_video needs an ffmpeg backend")
    from taylorseer import generate

    case = cases("wan")
    folder = tmp_path / "wan"
    case.pipe.save_pretrained(folder)
    video = tmp_path / "out.mp4"
    sizes = dict(height=64, width=64, num_frames=5, max_sequence_length=TEXT)
    full, cached, _ = generate.run_pipeline(
        str(folder), TaylorSeerConfig(interval=3), 6, "a cat", 0, video, **sizes
    )
    assert full.images.shape == cached.images.shape == (1, 64, 64, 3)
    assert cached.full_steps < 6
    assert video.stat().st_size > 0
    frames = iio.imread(video)  # full compute and TaylorSeer side by side
    assert frames.shape == (5, 64, 2 * 64, 3)
    generate.save_side_by_side(
        tmp_path / "out.png", [("full", full.images), ("cached", cached.images)], 1, "t"
    )
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_generate_on_a_video_pipeline_folder(cases, tmp_path, capsys):
    pytest.importorskip("imageio_ffmpeg", reason="diffusers' export_to_video needs an ffmpeg backend")
    from taylorseer.cli import main

    folder = tmp_path / "wan"
    cases("wan").pipe.save_pretrained(folder)
    output = tmp_path / "wan.png"
    arguments = ["generate", "--model", str(folder), "--steps", "6", "--interval", "3", "--height", "64"]
    assert main([*arguments, "--width", "64", "--frames", "5", "--output", str(output)]) == 0
    assert output.read_bytes()[:4] == b"\x89PNG" and output.with_suffix(".mp4").stat().st_size > 0
    assert "the videos side by side" in capsys.readouterr().out
