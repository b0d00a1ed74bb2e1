"""Tiny random diffusers pipelines (FLUX, Wan, HunyuanVideo) for the tests, built and reloaded locally.

Each pipeline is built from tiny random components (1 layer, hidden 64, a few latent tokens),
saved to a temp folder and loaded back with `from_pretrained(folder)`. Wan gets a tiny UMT5 text
encoder and a word-level tokenizer built here; FLUX and HunyuanVideo are saved without text
encoders and get prompt embeddings instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import diffusers
import tokenizers
import torch
import transformers
from torch import Tensor

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


# Pipelines for the scheduler-clock tests (tests/test_pipeline_clock.py): schedulers whose timestep
# values repeat inside a run, and a two-expert Wan 2.2. Built in memory (not reloaded) unless
# derived from a reloaded one above.


def _vae(**config: Any) -> Any:
    return diffusers.AutoencoderKL(
        block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4, **config,
    )  # fmt: skip  # 4 latent channels at half resolution


def build_pixart_sigma(scheduler: Any) -> Case:
    """PixArt-Sigma on `scheduler`; guidance batches cond and uncond into one call."""
    torch.manual_seed(0)
    transformer = diffusers.PixArtTransformer2DModel(
        **_HEADS, in_channels=4, out_channels=8, num_layers=1, norm_num_groups=4, cross_attention_dim=64,
        sample_size=16, patch_size=2, caption_channels=WIDTH,
    )  # fmt: skip  # out_channels 8: the learned variance, dropped by the pipeline
    pipe = diffusers.PixArtSigmaPipeline(
        tokenizer=None, text_encoder=None, vae=_vae(), transformer=transformer, scheduler=scheduler
    )
    pipe.set_progress_bar_config(disable=True)

    def inputs(**overrides: Any) -> dict[str, Any]:
        embeds = dict(
            prompt_embeds=_embeds(1, TEXT, WIDTH, seed=1), prompt_attention_mask=torch.ones(1, TEXT),
            negative_prompt=None, negative_prompt_embeds=_embeds(1, TEXT, WIDTH, seed=3),
            negative_prompt_attention_mask=torch.ones(1, TEXT),
        )  # fmt: skip
        sizes = dict(height=32, width=32, use_resolution_binning=False)
        return dict(embeds, **sizes, guidance_scale=4.5, output_type="pt") | overrides

    return Case(pipe, inputs, calls_per_step=1)  # cond and uncond in one batch


def build_sd3(scheduler: Any) -> Case:
    """Stable Diffusion 3 on `scheduler` (it passes no sigmas or mu, so FlowMatch Heun fits)."""
    torch.manual_seed(0)
    transformer = diffusers.SD3Transformer2DModel(
        **_HEADS, sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=1,
        joint_attention_dim=WIDTH, caption_projection_dim=64, pooled_projection_dim=WIDTH,
        pos_embed_max_size=32,
    )  # fmt: skip
    pipe = diffusers.StableDiffusion3Pipeline(
        transformer=transformer, scheduler=scheduler, vae=_vae(shift_factor=0.1), text_encoder=None,
        tokenizer=None, text_encoder_2=None, tokenizer_2=None, text_encoder_3=None, tokenizer_3=None,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)

    def inputs(**overrides: Any) -> dict[str, Any]:
        embeds = dict(
            prompt_embeds=_embeds(1, TEXT, WIDTH, seed=1), pooled_prompt_embeds=_embeds(1, WIDTH, seed=2),
            negative_prompt_embeds=_embeds(1, TEXT, WIDTH, seed=3),
            negative_pooled_prompt_embeds=_embeds(1, WIDTH, seed=4),
        )  # fmt: skip
        return dict(embeds, height=32, width=32, guidance_scale=4.0, output_type="pt") | overrides

    return Case(pipe, inputs, calls_per_step=1)  # cond and uncond in one batch


def build_wan22(folder: Any) -> Case:
    """Wan 2.2 with two experts: `build_wan`'s components plus a `transformer_2` of other weights;
    `transformer` denoises timesteps >= 500, `transformer_2` the rest. With shift 1 and 10 steps
    the second expert takes over at step 5."""
    base = build_wan(folder)
    torch.manual_seed(1)
    second = diffusers.WanTransformer3DModel.from_config(base.pipe.transformer.config)
    components = dict(base.pipe.components, transformer_2=second)
    components["scheduler"] = diffusers.FlowMatchEulerDiscreteScheduler(shift=1.0)
    pipe = diffusers.WanPipeline(**components, boundary_ratio=0.5)
    pipe.set_progress_bar_config(disable=True)
    return Case(pipe, base.inputs, calls_per_step=2)


def build_flux_bf16(folder: Any) -> Case:
    """FLUX in bfloat16 with mu fixed at 3.23: most sigmas lie near 1, where the bf16 timesteps the
    transformer sees (t / 1000) collide."""
    base = build_flux(folder)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=3.23, max_shift=3.23
    )  # mu = 3.23 at every resolution
    pipe = diffusers.FluxPipeline(**dict(base.pipe.components, scheduler=scheduler)).to(torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)

    def inputs(**overrides: Any) -> dict[str, Any]:
        given = base.inputs(**overrides)
        embeds = ("prompt_embeds", "pooled_prompt_embeds")
        return given | {name: given[name].to(torch.bfloat16) for name in embeds}

    return Case(pipe, inputs, calls_per_step=1)


def built_once(builders: dict[str, Callable[[Any], Case]], tmp_path_factory: Any) -> Callable[[str], Case]:
    """`case(name)`: the pipeline `builders[name]` builds, built on first use (in its own temp folder)."""
    built: dict[str, Case] = {}

    def case(name: str) -> Case:
        if name not in built:
            built[name] = builders[name](tmp_path_factory.mktemp(name))
        return built[name]

    return case
