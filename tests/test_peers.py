"""The benchmark's peers (diffusers TaylorSeerCache, cache-dit DBCache) on tiny FLUX and DiT models:
each skips work in a 20-step loop, stays finite, is removable bit-exactly and repeatable after reset.
"""

import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import FluxTransformer2DModel  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from taylorseer.bench.peers import apply_cache_dit, apply_diffusers_taylorseer  # noqa: E402
from taylorseer.models.dit import DiT  # noqa: E402

pytestmark = pytest.mark.integration

STEPS = 20
TOKENS, TEXT = 16, 4  # a 4x4 latent grid, 4 text tokens
# The modules our engine caches (and skips), as regexes for diffusers' identifiers.
SAME_MODULES = {
    "flux": [r"transformer_blocks\.\d+\.(attn|ff|ff_context)", r"single_transformer_blocks\.\d+\.proj_out"],
    "dit": [r"blocks\.\d+\.(attn|mlp)"],
}
SAME_SKIPPED = {"flux": [r"single_transformer_blocks\.\d+\.(attn|proj_mlp)"], "dit": None}
# Random tiny models change a lot from step to step; a loose threshold lets DBCache cache at all.
LOOSE = dict(num_steps=STEPS, threshold=0.5)
PEERS = {
    "diffusers-default": lambda model, name: apply_diffusers_taylorseer(model, interval=5, order=1, warmup=3),
    "diffusers-same-modules": lambda model, name: apply_diffusers_taylorseer(
        model,
        interval=5,
        order=2,
        warmup=3,
        identifiers=SAME_MODULES[name],
        skip_identifiers=SAME_SKIPPED[name],
    ),
    "cache-dit-dbcache": lambda model, name: apply_cache_dit(model, "dbcache", **LOOSE),
    "cache-dit-taylorseer": lambda model, name: apply_cache_dit(
        model, "dbcache+taylorseer", order=2, **LOOSE
    ),
}


@pytest.fixture(scope="module")
def flux():
    torch.manual_seed(0)
    model = FluxTransformer2DModel(
        patch_size=1, in_channels=8, num_layers=2, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 6, 6),
    )  # fmt: skip
    return model.eval()


@pytest.fixture(scope="module")
def dit():
    torch.manual_seed(0)
    model = DiT(
        input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=4, num_heads=2, num_classes=10
    )
    with torch.no_grad():  # adaLN-Zero would make every block the identity
        for linear in [block.adaLN_modulation[-1] for block in model.blocks] + [model.final_layer.linear]:
            linear.weight.normal_(0.0, 0.05)
            linear.bias.normal_(0.0, 0.05)
        model.final_layer.adaLN_modulation[-1].weight.normal_(0.0, 0.05)
    return model.eval()


@torch.no_grad()
def sample_flux(model, peer=None):
    """Euler steps on decreasing sigmas, CFG as one call on a batch of 2."""
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, TOKENS, 8, generator=g)
    text, pooled = torch.randn(2, TEXT, 32, generator=g), torch.randn(2, 32, generator=g)
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    img_ids = torch.stack([torch.zeros(TOKENS), rows.flatten(), cols.flatten()], dim=-1)
    sigmas = torch.linspace(1.0, 0.0, STEPS + 1)
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        with peer.call_context() if peer else torch.no_grad():
            flow = model(
                hidden_states=latents, timestep=sigma.expand(2), encoder_hidden_states=text,
                pooled_projections=pooled, img_ids=img_ids, txt_ids=torch.zeros(TEXT, 3), return_dict=False,
            )[0]  # fmt: skip
        latents = latents + (sigma_next - sigma) * flow
    return latents


@torch.no_grad()
def sample_dit(model, peer=None):
    """Descending DDPM timestep indices; forward_with_cfg calls model.forward once per step."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    labels = torch.tensor([3, 10])  # conditional, null
    for t in torch.linspace(999, 0, STEPS).long():
        with peer.call_context() if peer else torch.no_grad():
            out = model.forward_with_cfg(x, t.expand(2), labels, 4.0)
        x = x - 0.02 * out[:, :4]
    return x


SAMPLERS = {"flux": sample_flux, "dit": sample_dit}


def flops(function):
    with FlopCounterMode(display=False) as counter:
        result = function()
    return result, counter.get_total_flops()


_FULL: dict[str, tuple[torch.Tensor, int]] = {}


@pytest.fixture(params=["flux", "dit"])
def model(request):
    """(name, module, full-compute output, its FLOPs), the reference taken before any peer."""
    name = request.param
    module = request.getfixturevalue(name)
    if name not in _FULL:
        _FULL[name] = flops(lambda: SAMPLERS[name](module))
    return (name, module, *_FULL[name])


@pytest.fixture(params=list(PEERS))
def applied(request, model):
    """(model name, module, peer, full output, full FLOPs); the peer is removed afterwards."""
    if request.param.startswith("cache-dit"):
        pytest.importorskip("cache_dit")
    name, module, full, full_flops = model
    peer = PEERS[request.param](module, name)
    try:
        yield name, module, peer, full, full_flops
    finally:
        peer.remove()


def test_peer_skips_compute_and_stays_finite(applied):
    name, module, peer, full, full_flops = applied
    peer.reset()
    out, cached_flops = flops(lambda: SAMPLERS[name](module, peer))
    assert cached_flops < full_flops / 1.2
    assert peer.computed_steps() < STEPS
    assert torch.isfinite(out).all()
    assert not torch.equal(out, full)
    assert (out - full).norm() < 0.5 * full.norm()


def test_reset_makes_runs_repeatable_and_state_leaks_without_it(applied):
    """Both peers count calls: without reset() the next run continues the previous one."""
    name, module, peer, _, _ = applied
    runs = []
    for _ in range(2):
        peer.reset()
        runs.append((SAMPLERS[name](module, peer), peer.computed_steps()))
    assert torch.equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert not torch.equal(SAMPLERS[name](module, peer), runs[1][0])


def test_remove_restores_bit_exact_outputs(applied):
    name, module, peer, full, _ = applied
    children = [child for child, _ in module.named_children()]
    peer.reset()
    SAMPLERS[name](module, peer)
    peer.remove()
    assert torch.equal(SAMPLERS[name](module), full)
    assert "forward" not in vars(module)
    assert [child for child, _ in module.named_children()] == children


def test_diffusers_schedule_and_default_modules(dit):
    """Defaults hook `blocks.*.attn` only; full steps by call count: 0 1 2, then 4 9 14 19."""
    peer = apply_diffusers_taylorseer(dit, interval=5, order=1, warmup=3)
    try:
        assert peer.hooked == tuple(f"blocks.{i}.attn" for i in range(len(dit.blocks)))
        peer.reset()
        sample_dit(dit, peer)
        assert peer.computed_steps() == 7
    finally:
        peer.remove()


def test_diffusers_matching_nothing_raises(dit):
    with pytest.raises(ValueError, match="matched no module"):
        apply_diffusers_taylorseer(dit, interval=5, order=1, warmup=3, identifiers=[r"blocks\.\d+\.attn1"])
    assert not any(hasattr(m, "_diffusers_hook") and m._diffusers_hook.hooks for m in dit.modules())


def test_cache_dit_rejects_what_it_cannot_adapt(dit):
    pytest.importorskip("cache_dit")
    with pytest.raises(NotImplementedError, match="block list"):
        apply_cache_dit(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="exceeds"):
        apply_cache_dit(dit, fn_blocks=4, bn_blocks=1)
    with pytest.raises(ValueError, match="mode"):
        apply_cache_dit(dit, "taylorseer")


@pytest.mark.parametrize("name", ["flux", "dit"])
def test_cache_dit_with_a_steps_mask_computes_exactly_those_steps(name, request):
    pytest.importorskip("cache_dit")
    module = request.getfixturevalue(name)
    mask = [0, 1, 2, 7, 12, 19]
    peer = apply_cache_dit(module, "dbcache+taylorseer", STEPS, order=1, full_steps=mask)
    try:
        peer.reset()
        SAMPLERS[name](module, peer)
        assert peer.computed_steps() == len(mask)
    finally:
        peer.remove()
    with pytest.raises(ValueError, match="needs num_steps"):
        apply_cache_dit(module, full_steps=mask)
