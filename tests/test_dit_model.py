"""Native DiT: official checkpoint layout, checkpoint loading, CFG, and the ADM sampler.

The reference layout and the reference diffusion equations are written out here, independently
of the implementation, and everything runs on tiny random models (depth 2, hidden 64).
"""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from taylorseer.models import dit as dit_module
from taylorseer.models.dit import DiT, DiT_models, load_dit_checkpoint, sample

F64 = torch.float64
TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4, num_classes=10)


pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]


def tiny_dit(dtype: torch.dtype = torch.float32, seed: int = 0, **overrides) -> DiT:
    """A tiny DiT with random weights everywhere: the adaLN-Zero init alone would output zeros."""
    torch.manual_seed(seed)
    model = DiT(**{**TINY, **overrides})
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0.0, 0.1)
    return model.to(dtype).eval()


def official_shapes(depth, d, c, p, tokens, num_classes, null_row=True) -> dict[str, tuple[int, ...]]:
    """facebookresearch/DiT state-dict layout (timm PatchEmbed/Attention/Mlp names), learn_sigma."""
    shapes = {
        "pos_embed": (1, tokens, d),
        "x_embedder.proj.weight": (d, c, p, p),
        "x_embedder.proj.bias": (d,),
        "t_embedder.mlp.0.weight": (d, 256),
        "t_embedder.mlp.0.bias": (d,),
        "t_embedder.mlp.2.weight": (d, d),
        "t_embedder.mlp.2.bias": (d,),
        "y_embedder.embedding_table.weight": (num_classes + int(null_row), d),
        "final_layer.linear.weight": (p * p * 2 * c, d),
        "final_layer.linear.bias": (p * p * 2 * c,),
        "final_layer.adaLN_modulation.1.weight": (2 * d, d),
        "final_layer.adaLN_modulation.1.bias": (2 * d,),
    }
    for i in range(depth):
        for name, shape in {
            "attn.qkv.weight": (3 * d, d),
            "attn.qkv.bias": (3 * d,),
            "attn.proj.weight": (d, d),
            "attn.proj.bias": (d,),
            "mlp.fc1.weight": (4 * d, d),
            "mlp.fc1.bias": (4 * d,),
            "mlp.fc2.weight": (d, 4 * d),
            "mlp.fc2.bias": (d,),
            "adaLN_modulation.1.weight": (6 * d, d),
            "adaLN_modulation.1.bias": (6 * d,),
        }.items():
            shapes[f"blocks.{i}.{name}"] = shape
    return shapes


def shapes_of(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


# --- layout and checkpoints -------------------------------------------------------------------


@pytest.mark.parametrize("dropout, null_row", [(0.1, True), (0.0, False)])
def test_state_dict_has_official_keys_and_loads_strict(dropout, null_row):
    model = DiT(**TINY, class_dropout_prob=dropout)
    expected = official_shapes(2, 64, 4, 2, 16, 10, null_row=null_row)
    assert shapes_of(model.state_dict()) == expected
    state = {k: torch.randn(shape) for k, shape in expected.items()}
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.blocks[1].mlp.fc2.weight, state["blocks.1.mlp.fc2.weight"])


def test_named_sizes_match_the_paper():
    with torch.device("meta"):
        models = {name: factory() for name, factory in DiT_models.items()}
    sizes = {"XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6)}
    assert set(models) == {f"DiT-{s}/{p}" for s in sizes for p in (2, 4, 8)}
    for name, model in models.items():
        depth, hidden, heads = sizes[name[4:-2]]
        p = int(name[-1])
        assert (len(model.blocks), model.pos_embed.shape[-1], model.num_heads) == (depth, hidden, heads)
        assert model.x_embedder.proj.weight.shape == (hidden, 4, p, p)
    xl = models["DiT-XL/2"]
    assert shapes_of(xl.state_dict()) == official_shapes(28, 1152, 4, 2, 256, 1000)
    assert round(sum(p.numel() for p in xl.parameters()) / 1e6) == 675  # "675M" in the paper


def test_pos_embed_is_fixed_2d_sincos_width_first():
    model = DiT(**TINY)  # grid 4x4, D = 64: [sin(col) | cos(col) | sin(row) | cos(row)], 16 each
    pe = model.pos_embed[0]
    assert not model.pos_embed.requires_grad
    omega = 1.0 / 10000 ** (torch.arange(16, dtype=F64) / 16)

    def expected(row: int, col: int) -> torch.Tensor:
        return torch.cat([(col * omega).sin(), (col * omega).cos(), (row * omega).sin(), (row * omega).cos()])

    for row, col in [(0, 0), (0, 1), (1, 0), (2, 3)]:
        torch.testing.assert_close(pe[4 * row + col].double(), expected(row, col), atol=1e-6, rtol=0)


@pytest.fixture
def tiny_registry(monkeypatch):
    """Registers "DiT-T/2" (the tiny size) so load_dit_checkpoint can build it."""
    sizes = {k: v for k, v in TINY.items() if k not in ("input_size", "num_classes")}
    monkeypatch.setitem(dit_module.DiT_models, "DiT-T/2", lambda **kw: DiT(num_classes=10, **sizes, **kw))
    return "DiT-T/2"


@pytest.mark.parametrize("wrap", ["raw", "ema", "model"])
def test_load_dit_checkpoint_roundtrip(tmp_path, tiny_registry, wrap):
    source, decoy = tiny_dit(seed=1), tiny_dit(seed=2)
    state = source.state_dict()
    payload = {
        "raw": state,
        # a train.py checkpoint: ema wins over the raw weights; args is an argparse.Namespace
        "ema": {"model": decoy.state_dict(), "ema": state, "args": argparse.Namespace(model="DiT-T/2")},
        "model": {"model": state},
    }[wrap]
    path = tmp_path / "tiny.pt"
    torch.save(payload, path)
    loaded = load_dit_checkpoint(path, tiny_registry, image_size=64)  # latent 8x8
    assert not loaded.training and not loaded.pos_embed.requires_grad
    assert all(p.device.type == "cpu" for p in loaded.state_dict().values())
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_load_dit_checkpoint_errors_name_file_and_key(tmp_path, tiny_registry):
    missing = tmp_path / "absent.pt"
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_dit_checkpoint(missing, tiny_registry, image_size=64)

    state = tiny_dit().state_dict()
    state["blocks.1.attn.qkv.weight"] = torch.zeros(5, 64)
    bad = tmp_path / "bad_shape.pt"
    torch.save(state, bad)
    with pytest.raises(ValueError, match=r"bad_shape\.pt.*blocks\.1\.attn\.qkv\.weight.*\(5, 64\)"):
        load_dit_checkpoint(bad, tiny_registry, image_size=64)

    state = tiny_dit().state_dict()
    state["extra.weight"] = state.pop("final_layer.linear.bias")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_dit_checkpoint(junk, tiny_registry, image_size=64)

    renamed = tmp_path / "renamed.pt"
    torch.save(state, renamed)
    with pytest.raises(ValueError, match=r"missing keys: final_layer\.linear\.bias.*unexpected keys: extra"):
        load_dit_checkpoint(renamed, tiny_registry, image_size=64)


# --- classifier-free guidance -----------------------------------------------------------------


def test_forward_with_cfg_guides_only_first_three_channels():
    model = tiny_dit()
    x = torch.randn(2, 4, 8, 8)
    x2, t, y = torch.cat([x, torch.randn_like(x)]), torch.tensor([7, 7, 7, 7]), torch.tensor([1, 2, 10, 10])
    cond = model(x, t[:2], y[:2])
    uncond = model(x, t[2:], y[2:])  # the second half of x2 is ignored: both halves see x
    out = model.forward_with_cfg(x2, t, y, cfg_scale=4.0)
    guided = uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3])
    torch.testing.assert_close(out[:2, :3], guided)
    torch.testing.assert_close(out[2:, :3], guided)
    torch.testing.assert_close(out[:2, 3:], cond[:, 3:])  # 4th eps channel and variances unguided
    torch.testing.assert_close(out[2:, 3:], uncond[:, 3:])
    assert not torch.allclose(out[:2, 3], uncond[:, 3] + 4.0 * (cond[:, 3] - uncond[:, 3]))


# --- ADM diffusion, written independently --------------------------------------------------------


def adm_kept_timesteps_50() -> list[int]:
    """ADM space_timesteps(1000, "50"): 50 points evenly over [0, 999], rounded."""
    return [round(k * 999 / 49) for k in range(50)]


@torch.no_grad()
def adm_reference(model, noise, labels, cfg_scale, generator=None) -> torch.Tensor:
    """DiT sampling (50 respaced steps) from the equations, in float64; DDPM if a generator."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    kept = adm_kept_timesteps_50()
    abar = torch.cumprod(1 - betas, 0)[kept]
    abar_prev = torch.cat([torch.ones(1, dtype=F64), abar[:-1]])
    beta = 1 - abar / abar_prev  # betas of the respaced chain
    n, dtype = len(noise), next(model.parameters()).dtype
    x = torch.cat([noise, noise]).double()
    y = torch.cat([labels, torch.full_like(labels, model.num_classes)])
    for j in reversed(range(50)):
        t = torch.full((2 * n,), kept[j], dtype=torch.long)
        out = model.forward_with_cfg(x.to(dtype), t, y, cfg_scale).double()
        eps, v = out[:, :4], out[:, 4:]
        x0 = (x - (1 - abar[j]).sqrt() * eps) / abar[j].sqrt()
        if generator is None:
            x = abar_prev[j].sqrt() * x0 + (1 - abar_prev[j]).sqrt() * eps
            continue
        mean = (beta[j] * abar_prev[j].sqrt() * x0 + (1 - abar_prev[j]) * (1 - beta[j]).sqrt() * x) / (
            1 - abar[j]
        )
        z = torch.randn(x.shape, generator=generator, dtype=dtype)
        if j > 0:
            post_var = beta[j] * (1 - abar_prev[j]) / (1 - abar[j])
            frac = (v + 1) / 2
            log_var = frac * beta[j].log() + (1 - frac) * post_var.log()
            x = mean + (0.5 * log_var).exp() * z
        else:
            x = mean
    return x[:n]


def test_respacing_keeps_adm_timesteps():
    from taylorseer.models.gaussian_diffusion import GaussianDiffusion

    assert GaussianDiffusion("50").timesteps == adm_kept_timesteps_50()[::-1]
    assert adm_kept_timesteps_50()[:6] == [0, 20, 41, 61, 82, 102]
    assert GaussianDiffusion("250").timesteps == [round(k * 999 / 249) for k in range(250)][::-1]
    assert GaussianDiffusion("ddim50").timesteps == list(range(980, -1, -20))


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_sample_matches_adm_equations_float64(sampler):
    model = tiny_dit(F64)
    noise, labels = torch.randn(2, 4, 8, 8, dtype=F64), torch.tensor([3, 5])
    seen_t = []
    forward = model.forward

    def recording_forward(x, t, y):  # an instance-level wrapper, like a cache hook
        seen_t.append(t.clone())
        return forward(x, t, y)

    model.forward = recording_forward
    gen = (lambda: torch.Generator().manual_seed(7)) if sampler == "ddpm" else (lambda: None)
    ours = sample(model, noise, labels, steps=50, cfg_scale=1.5, sampler=sampler, generator=gen())
    assert len(seen_t) == 50 and all(t.dtype == torch.long and t.shape == (4,) for t in seen_t)
    assert [int(t[0]) for t in seen_t] == adm_kept_timesteps_50()[::-1]
    ref = adm_reference(model, noise, labels, 1.5, generator=gen())
    assert ref.abs().max() > 1.0  # a non-trivial trajectory
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9 * float(ref.abs().max()))


def test_sample_float32_agrees_with_float64_reference():
    model = tiny_dit()
    noise, labels = torch.randn(2, 4, 8, 8), torch.tensor([3, 5])
    ours = sample(model, noise, labels, steps=50, cfg_scale=1.5)
    ref = adm_reference(model, noise, labels, 1.5)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_ddpm_is_reproducible_and_differs_from_ddim():
    model = tiny_dit()
    noise, labels = torch.randn(2, 4, 8, 8), torch.tensor([0, 9])

    def ddpm(seed: int) -> torch.Tensor:
        return sample(
            model, noise, labels, steps=10, sampler="ddpm", generator=torch.Generator().manual_seed(seed)
        )

    first, again, other = ddpm(0), ddpm(0), ddpm(1)
    ddim = sample(model, noise, labels, steps=10, sampler="ddim")
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=1e-3)
    assert not torch.allclose(first, ddim, atol=1e-3)


def test_cfg_scale_one_runs_the_plain_conditional_batch():
    model = tiny_dit()
    noise, labels = torch.randn(3, 4, 8, 8), torch.tensor([1, 2, 3])
    seen_y = []
    forward = model.forward
    model.forward = lambda x, t, y: (seen_y.append(y), forward(x, t, y))[1]
    model.forward_with_cfg = None  # must not be used without guidance
    out = sample(model, noise, labels, steps=5, cfg_scale=1.0)
    assert out.shape == noise.shape and len(seen_y) == 5
    assert all(torch.equal(y, labels) for y in seen_y)


def test_unknown_sampler_is_named_in_the_error():
    model = tiny_dit()
    with pytest.raises(ValueError, match="'euler'"):
        sample(model, torch.randn(1, 4, 8, 8), torch.tensor([0]), sampler="euler")


def test_learned_range_endpoints_give_adm_variances():
    """With x = 0 and eps = 0 the posterior mean is 0, so a DDPM step returns std * noise:
    v = +1 must give std sqrt(beta_j), v = -1 the posterior std."""
    from taylorseer.models.gaussian_diffusion import GaussianDiffusion

    diffusion = GaussianDiffusion("50")
    i = 10
    j = 49 - i
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=F64), 0)[adm_kept_timesteps_50()]
    beta = 1 - abar[j] / abar[j - 1]
    post_var = beta * (1 - abar[j - 1]) / (1 - abar[j])
    x, noise = torch.zeros(1, 4, 2, 2, dtype=F64), torch.ones(1, 4, 2, 2, dtype=F64)
    for v, var in [(1.0, beta), (-1.0, post_var)]:
        out = torch.cat([torch.zeros_like(x), torch.full_like(x, v)], dim=1)
        step = diffusion.ddpm_step(out, x, i, noise)
        torch.testing.assert_close(step, torch.full_like(x, math.sqrt(var)), rtol=1e-12, atol=0)
