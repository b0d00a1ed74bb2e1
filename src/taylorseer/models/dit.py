"""DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers"), written natively.

Module names and parameter shapes follow facebookresearch/DiT so its released checkpoints
(e.g. ``DiT-XL-2-256x256.pt``) load with ``load_state_dict(strict=True)``. No timm: the patch
embedding, attention and MLP live in ``dit_layers``, named as timm names them.

Every block computes ``x + gate * attn(modulate(norm1(x)))`` then the same with ``mlp``; the
``attn`` and ``mlp`` children are what a feature cache replaces (their outputs, before gating).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from taylorseer.models.dit_layers import (
    Attention,
    LabelEmbedder,
    Mlp,
    PatchEmbed,
    TimestepEmbedder,
    modulate,
    sincos_pos_embed_2d,
)
from taylorseer.models.dit_sampling import sample

__all__ = ["DiT", "DiT_models", "load_dit_checkpoint", "sample"]

# The official forward_with_cfg guides only the first 3 output channels (a GLIDE leftover kept for
# exact reproducibility of the paper's FIDs); we keep that so results match the reference.
CFG_CHANNELS = 3


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning on c (N, D)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        mod = self.adaLN_modulation(c).chunk(6, dim=1)  # six (N, D) vectors
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x  # (N, T, D)


class FinalLayer(nn.Module):
    """adaLN-modulated norm, then a linear map of each token to its p*p*C_out patch values."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (N, T, p*p*C_out)


class DiT(nn.Module):
    """Class-conditional diffusion transformer on (N, C, H, W) latents.

    Predicts eps (and, with ``learn_sigma``, the variance interpolation values) as
    (N, out_channels, H, W) with ``out_channels = 2 * in_channels`` when ``learn_sigma``.
    """

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        class_dropout_prob: float = 0.1,
        num_classes: int = 1000,
        learn_sigma: bool = True,
    ):
        super().__init__()
        self.learn_sigma = learn_sigma
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.num_classes = num_classes  # also the label of the null (unconditional) class

        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        num_patches = self.x_embedder.num_patches
        # Fixed sin-cos table, stored in checkpoints but never trained.
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT init: xavier linears, adaLN-Zero (modulation and output start at zero)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        grid = self.x_embedder.grid_size
        self.pos_embed.data.copy_(sincos_pos_embed_2d(self.pos_embed.shape[-1], grid)[None])
        # The patch conv is initialised as the linear map it is on flattened patches.
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        zero_init = [block.adaLN_modulation[-1] for block in self.blocks]
        zero_init += [self.final_layer.adaLN_modulation[-1], self.final_layer.linear]
        for linear in zero_init:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def unpatchify(self, x: Tensor) -> Tensor:
        """(N, T, p*p*C_out) tokens -> (N, C_out, H, W) image."""
        n, p, c, g = x.shape[0], self.patch_size, self.out_channels, self.x_embedder.grid_size
        x = x.reshape(n, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)  # (N, C, h, p, w, p)
        return x.reshape(n, c, g * p, g * p)

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        """x (N, C, H, W) latents, t (N,) timesteps, y (N,) labels -> (N, C_out, H, W)."""
        x = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        c = self.t_embedder(t) + self.y_embedder(y)  # (N, D)
        for block in self.blocks:
            x = block(x, c)  # (N, T, D)
        x = self.final_layer(x, c)  # (N, T, p*p*C_out)
        return self.unpatchify(x)  # (N, C_out, H, W)

    def forward_with_cfg(self, x: Tensor, t: Tensor, y: Tensor, cfg_scale: float) -> Tensor:
        """Classifier-free guidance on a doubled batch (2n, ...): first half conditional labels,
        second half the null class. Only the first half of ``x`` is used; the guided output is
        returned for both halves. Like the reference, only the first ``CFG_CHANNELS`` channels are
        guided; the rest pass through unguided. Calls ``self.forward`` so instance hooks see it.
        """
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half], dim=0), t, y)  # (2n, C_out, H, W)
        eps, rest = out[:, :CFG_CHANNELS], out[:, CFG_CHANNELS:]
        cond, uncond = eps.chunk(2, dim=0)
        guided = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([guided, guided], dim=0), rest], dim=1)


def _factory(depth: int, hidden_size: int, num_heads: int, patch_size: int) -> Callable[..., DiT]:
    def build(**kwargs) -> DiT:
        sizes = dict(depth=depth, hidden_size=hidden_size, num_heads=num_heads)
        return DiT(patch_size=patch_size, **sizes, **kwargs)

    return build


# name -> (depth, hidden_size, num_heads), from the DiT paper's Table 1.
_SIZES = {"XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6)}
DiT_models: dict[str, Callable[..., DiT]] = {
    f"DiT-{name}/{p}": _factory(*size, patch_size=p) for name, size in _SIZES.items() for p in (2, 4, 8)
}


def _checkpoint_problems(state: dict[str, Tensor], expected: dict[str, Tensor]) -> list[str]:
    """Human-readable differences between a loaded state dict and the model's own."""

    def listed(what: str, keys: list[str]) -> list[str]:
        more = f" (+{len(keys) - 8} more)" if len(keys) > 8 else ""
        return [f"{what}: {', '.join(keys[:8])}{more}"] if keys else []

    shapes = [
        f"{k} got {tuple(state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    return (
        listed("missing keys", sorted(expected.keys() - state.keys()))
        + listed("unexpected keys", sorted(state.keys() - expected.keys()))
        + listed("shape mismatch", shapes)
    )


def load_dit_checkpoint(path: str | Path, model_name: str = "DiT-XL/2", image_size: int = 256) -> DiT:
    """Build ``DiT_models[model_name]`` for ``image_size`` pixels (latent side image_size // 8)
    and load a facebookresearch/DiT ``.pt`` file into it; returns the model in eval mode.

    Accepts a raw state dict (the released checkpoints) or a training checkpoint dict, from
    which "ema" is preferred over "model". Raises FileNotFoundError / ValueError naming the file.
    """
    path = Path(path)
    if model_name not in DiT_models:
        raise ValueError(f"unknown model_name {model_name!r}; expected one of {list(DiT_models)}")
    if image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8 (VAE downsampling), got {image_size}")
    if not path.is_file():
        raise FileNotFoundError(f"DiT checkpoint not found: {path}")
    try:
        # train.py checkpoints also pickle an argparse.Namespace; allow just that class.
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not readable as a weights-only torch checkpoint: {err}") from err
    state = obj.get("ema", obj.get("model", obj)) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a DiT state dict (expected a dict of tensors)")
    # Built on the meta device: the random init would be overwritten anyway (seconds for XL).
    with torch.device("meta"):
        model = DiT_models[model_name](input_size=image_size // 8)
    expected = model.state_dict()
    problems = _checkpoint_problems(state, expected)
    if problems:
        where = f"{path} does not match {model_name} at image_size {image_size}"
        raise ValueError(f"{where}: " + " | ".join(problems))
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True, assign=True)
    return model.eval()
