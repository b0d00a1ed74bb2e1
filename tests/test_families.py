"""One generic suite over the diffusers transformer families: tiny random models, every granularity.

Each family is a row of FAMILIES: a tiny config (hidden 64, 1-2 layers of each block kind, 64 latent
tokens, 8 text tokens), the shape of its latent, the rest of its forward inputs, and how many modules
granularity "module" caches. Cases the engine cannot run yet are strict xfails with the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import Tensor

diffusers = pytest.importorskip("diffusers")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from taylorseer import TaylorSeerConfig, apply_taylorseer  # noqa: E402

GRANULARITIES = ("module", "block", "stack", "model")
BATCH, TEXT = 2, 8  # two samples per call, 8 text tokens
Randn = Callable[..., Tensor]  # randn(*shape) -> a (BATCH, *shape) tensor


@dataclass(frozen=True)
class Family:
    model: str  # the diffusers class
    config: dict[str, Any]  # constructor kwargs of a tiny random model
    latent: tuple[int, ...]  # hidden_states without the batch dimension (64 tokens once patched)
    conditioning: Callable[[Randn], dict[str, Any]]  # the other forward inputs
    cached_modules: int  # handle.stats["cached_modules"] at granularity "module"
    condition: str = "encoder_hidden_states"  # the input zeroed for the unconditional branch
    time_scale: float = 1000.0  # timestep = sigma * time_scale, as the family's pipeline passes it
    timestep: str = "timestep"  # the forward argument that carries the timestep
    broken: dict[str, tuple[Any, str]] = field(default_factory=dict)  # granularity -> (raises, reason)


def _ids(height: int, width: int) -> Tensor:
    rows, cols = torch.meshgrid(torch.arange(float(height)), torch.arange(float(width)), indexing="ij")
    return torch.stack([torch.zeros(height * width), rows.flatten(), cols.flatten()], dim=-1)


_HEADS = dict(num_attention_heads=4, attention_head_dim=16)  # hidden 64 everywhere


def _text(randn: Randn) -> dict[str, Any]:
    return dict(encoder_hidden_states=randn(TEXT, 32))


_HIDREAM = dict(
    stack=(
        ValueError,
        "HiDream concatenates fresh Llama tokens to the text stream before every block, so the streams "
        "change shape through the stack and its whole-stack update is not defined",
    ),
)

FAMILIES: dict[str, Family] = {
    "flux": Family(
        "FluxTransformer2DModel",
        dict(_HEADS, patch_size=1, in_channels=8, num_layers=2, num_single_layers=2, joint_attention_dim=32,
             pooled_projection_dim=32, axes_dims_rope=(4, 6, 6)),
        latent=(64, 8),  # packed 2x2 patches of an 8x8 grid
        conditioning=lambda randn: dict(
            _text(randn), pooled_projections=randn(32), img_ids=_ids(8, 8), txt_ids=torch.zeros(TEXT, 3)
        ),
        cached_modules=2 * 3 + 2 * 1,  # double: attn, ff, ff_context; single: proj_out
        time_scale=1.0,
    ),
    "hunyuan_video": Family(
        "HunyuanVideoTransformer3DModel",
        dict(_HEADS, in_channels=4, out_channels=4, num_layers=1, num_single_layers=1, num_refiner_layers=1,
             guidance_embeds=False, text_embed_dim=32, pooled_projection_dim=32, rope_axes_dim=(4, 6, 6)),
        latent=(4, 4, 8, 8),  # (C, F, H, W); 2x2 patches
        conditioning=lambda randn: dict(
            _text(randn), encoder_attention_mask=torch.ones(BATCH, TEXT), pooled_projections=randn(32)
        ),
        cached_modules=1 * 3 + 1 * 1,  # double: attn, ff, ff_context; single: proj_out; refiner: never
    ),
    "wan": Family(
        "WanTransformer3DModel",
        dict(_HEADS, in_channels=4, out_channels=4, text_dim=32, freq_dim=32, ffn_dim=128, num_layers=2,
             rope_max_seq_len=32),
        latent=(4, 4, 8, 8),  # (C, F, H, W); 1x2x2 patches
        conditioning=_text,
        cached_modules=2 * 3,  # attn1, attn2, ffn
    ),
    "hidream": Family(
        "HiDreamImageTransformer2DModel",
        dict(_HEADS, patch_size=2, in_channels=4, out_channels=4, num_layers=1, num_single_layers=1,
             caption_channels=[32, 16], text_emb_dim=32, num_routed_experts=2, num_activated_experts=1,
             axes_dims_rope=(4, 6, 6), max_resolution=(16, 16), llama_layers=[0, 1]),
        latent=(4, 16, 16),
        conditioning=lambda randn: dict(
            encoder_hidden_states_t5=randn(TEXT, 32),
            encoder_hidden_states_llama3=torch.stack([randn(TEXT, 16), randn(TEXT, 16)]),  # (layer, B, L, D)
            pooled_embeds=randn(32),
        ),
        cached_modules=1 * 3 + 1 * 2,  # double: attn1, ff_i, ff_t; single: attn1, ff_i
        condition="encoder_hidden_states_t5",
        timestep="timesteps",
        broken=_HIDREAM,
    ),
    "dit": Family(
        "DiTTransformer2DModel",
        dict(_HEADS, in_channels=4, num_layers=2, sample_size=16, patch_size=2, num_embeds_ada_norm=10),
        latent=(4, 16, 16),
        conditioning=lambda randn: dict(class_labels=torch.tensor([1, 3])),
        cached_modules=2 * 2,  # attn1, ff
        condition="class_labels",  # the unconditional branch is class 0
    ),
    "sd3": Family(
        "SD3Transformer2DModel",
        dict(_HEADS, sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
             joint_attention_dim=32, caption_projection_dim=64, pooled_projection_dim=32,
             pos_embed_max_size=16),
        latent=(4, 16, 16),
        conditioning=lambda randn: dict(_text(randn), pooled_projections=randn(32)),
        cached_modules=3 + 2,  # attn, ff, ff_context; the last block has no ff_context
    ),
    "pixart": Family(
        "PixArtTransformer2DModel",
        dict(_HEADS, in_channels=4, out_channels=4, num_layers=2, cross_attention_dim=64, sample_size=16,
             patch_size=2, caption_channels=32),
        latent=(4, 16, 16),
        conditioning=lambda randn: dict(
            _text(randn), added_cond_kwargs=dict(resolution=None, aspect_ratio=None)
        ),
        cached_modules=2 * 3,  # attn1, attn2, ff
    ),
    "cogvideox": Family(
        "CogVideoXTransformer3DModel",
        dict(_HEADS, in_channels=4, out_channels=4, time_embed_dim=32, text_embed_dim=32, num_layers=2,
             sample_width=8, sample_height=8, sample_frames=13, patch_size=2, max_text_seq_length=TEXT),
        latent=(4, 4, 8, 8),  # (F, C, H, W): frames before channels; 2x2 patches
        conditioning=_text,
        cached_modules=2 * 2,  # attn1 (video and text outputs), ff (one MLP over both)
    ),
    "ltx_video": Family(
        "LTXVideoTransformer3DModel",
        dict(_HEADS, in_channels=8, out_channels=8, cross_attention_dim=64, num_layers=2,
             caption_channels=32),
        latent=(64, 8),  # packed tokens of a 4x4x4 video
        conditioning=lambda randn: dict(
            _text(randn), encoder_attention_mask=torch.ones(BATCH, TEXT), num_frames=4, height=4, width=4
        ),
        cached_modules=2 * 3,  # attn1, attn2, ff
    ),
    "qwen_image": Family(
        "QwenImageTransformer2DModel",
        dict(_HEADS, patch_size=2, in_channels=16, out_channels=4, num_layers=2, joint_attention_dim=32,
             axes_dims_rope=(4, 6, 6)),
        latent=(64, 16),  # packed 2x2 patches of an 8x8 grid
        conditioning=lambda randn: dict(
            _text(randn), encoder_hidden_states_mask=torch.ones(BATCH, TEXT), img_shapes=[(1, 8, 8)] * BATCH
        ),
        cached_modules=2 * 3,  # attn (image and text outputs), img_mlp, txt_mlp
        time_scale=1.0,
    ),
    "sana": Family(
        "SanaTransformer2DModel",
        dict(_HEADS, in_channels=4, out_channels=4, num_layers=2, num_cross_attention_heads=4,
             cross_attention_head_dim=16, cross_attention_dim=64, caption_channels=32, sample_size=8),
        latent=(4, 8, 8),
        conditioning=_text,
        cached_modules=2 * 3,  # attn1, attn2, ff
    ),
}  # fmt: skip


def _case(name: str, granularity: str) -> Any:
    broken = FAMILIES[name].broken.get(granularity)
    marks = [] if broken is None else [pytest.mark.xfail(raises=broken[0], reason=broken[1], strict=True)]
    return pytest.param(name, granularity, marks=marks, id=f"{name}-{granularity}")


CASES = [_case(name, granularity) for name in FAMILIES for granularity in GRANULARITIES]
MODULE_CASES = [_case(name, "module") for name in FAMILIES]


pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]


class Subject:
    """A family's tiny model, its inputs, and its uncached reference runs (computed once)."""

    def __init__(self, name: str) -> None:
        self.family = family = FAMILIES[name]
        torch.manual_seed(0)
        self.model = getattr(diffusers, family.model)(**family.config).eval()
        generator = torch.Generator().manual_seed(0)

        def randn(*shape: int) -> Tensor:
            return torch.randn(BATCH, *shape, generator=generator)

        self.noise = randn(*family.latent)
        self.cond = family.conditioning(randn)
        self.uncond = dict(self.cond, **{family.condition: torch.zeros_like(self.cond[family.condition])})

    def __call__(self, latents: Tensor, sigma: Tensor, conditioning: dict[str, Any]) -> Tensor:
        timestep = (sigma * self.family.time_scale).expand(BATCH)
        inputs = {self.family.timestep: timestep, **conditioning}
        return self.model(hidden_states=latents, return_dict=False, **inputs)[0]

    @torch.no_grad()
    def sample(self, steps: int, shift: float = 3.0) -> Tensor:
        """Euler steps on shifted sigmas: the timestep falls and the latent moves every step."""
        latents = self.noise
        u = torch.linspace(1.0, 1.0 / steps, steps)
        sigmas = torch.cat([shift * u / (1 + (shift - 1) * u), torch.zeros(1)])
        for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
            latents = latents + (sigma_next - sigma) * self(latents, sigma, self.cond)
        return latents

    @functools.cached_property
    def reference(self) -> Tensor:
        return self.sample(SHORT)

    @functools.cached_property
    def full_flops(self) -> int:
        return flops(lambda: self.sample(LONG))


SHORT, LONG = 8, 30  # steps of the exactness runs and of the FLOP runs


def flops(function: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


@pytest.fixture(scope="module")
def subjects() -> Callable[[str], Subject]:
    return functools.cache(Subject)


@pytest.mark.parametrize(("name", "granularity"), CASES)
def test_interval_one_is_bit_identical(subjects, name, granularity):
    subject = subjects(name)
    with apply_taylorseer(subject.model, TaylorSeerConfig(interval=1, granularity=granularity)):
        assert torch.equal(subject.sample(SHORT), subject.reference)


@pytest.mark.parametrize(("name", "granularity"), CASES)
def test_interval_five_cuts_flops_at_least_2_5x(subjects, name, granularity):
    subject = subjects(name)
    with apply_taylorseer(subject.model, TaylorSeerConfig(interval=5, granularity=granularity)) as handle:
        cached = flops(lambda: subject.sample(LONG))
        assert handle.stats["forecast_steps"] > 0
    assert subject.full_flops / cached >= 2.5


@pytest.mark.parametrize(("name", "granularity"), CASES)
def test_remove_restores_bit_exact_outputs(subjects, name, granularity):
    subject = subjects(name)
    handle = apply_taylorseer(subject.model, TaylorSeerConfig(interval=5, granularity=granularity))
    try:
        assert not torch.equal(subject.sample(SHORT), subject.reference)  # steps 2-5 and 7 forecast
    finally:
        handle.remove()
    assert torch.equal(subject.sample(SHORT), subject.reference)


@pytest.mark.parametrize(("name", "granularity"), MODULE_CASES)
def test_module_granularity_caches_the_family_tables_modules(subjects, name, granularity):
    subject = subjects(name)
    with apply_taylorseer(subject.model, TaylorSeerConfig(granularity=granularity)) as handle:
        assert handle.stats["cached_modules"] == subject.family.cached_modules


@pytest.mark.parametrize(("name", "granularity"), CASES)
def test_separate_cfg_calls_keep_branches_isolated(subjects, name, granularity):
    """Cond and uncond as two calls per step forecast exactly what each branch cached alone does."""
    subject = subjects(name)
    sigmas = torch.linspace(1.0, 0.05, SHORT)
    latents = [subject.noise + 0.1 * k for k in range(SHORT)]  # a fixed input per step
    branches = [subject.cond, subject.uncond]

    def outputs(conditionings):
        return [[subject(x, sigma, c) for c in conditionings] for x, sigma in zip(latents, sigmas)]

    config = TaylorSeerConfig(interval=3, granularity=granularity)  # full steps 0, 1, 4, 7
    with torch.no_grad():
        with apply_taylorseer(subject.model, config) as handle:
            both = outputs(branches)
            assert handle.stats["full_calls"] == 2 * handle.stats["full_steps"]
            assert handle.stats["forecast_calls"] == 2 * handle.stats["forecast_steps"] > 0
        for k, branch in enumerate(branches):
            with apply_taylorseer(subject.model, config):
                alone = outputs([branch])
            assert all(torch.equal(a[k], b[0]) for a, b in zip(both, alone))


def test_memory_fallback_passes_over_stack_where_streams_change_shape(subjects):
    """HiDream's text stream grows per block: a budget that rules out "module" lands on "model"."""
    subject = subjects("hidream")
    config = TaylorSeerConfig(interval=5, granularity="model", schedule="fixed")
    with apply_taylorseer(subject.model, config) as handle:
        expected = subject.sample(SHORT)
        model_bytes = handle.stats["cache_bytes"]
    lean = TaylorSeerConfig(interval=5, granularity="module", memory_budget=model_bytes, schedule="fixed")
    with pytest.warns(UserWarning) as caught, apply_taylorseer(subject.model, lean) as handle:
        assert torch.equal(subject.sample(SHORT), expected)
        assert handle.stats["granularity"] == "model" and handle.stats["cache_bytes"] <= model_bytes
    fallbacks = [str(w.message).split(": using ")[-1] for w in caught]
    assert fallbacks == ["granularity 'stack'", "granularity 'model'"]
    assert "'stack' does not apply to this model" in str(caught[1].message)
