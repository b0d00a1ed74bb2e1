"""A tiny DiT-like model whose attention and MLP outputs are exact polynomials of the timestep.

`blocks` of `ToyBlock`, each with `attn` and `mlp` children, called as
`model(hidden_states=..., timestep=...)`. With `modulated=False` every gate is exactly 1, so the
output of every block, of the stack and of the model is quadratic in the timestep too (for a
fixed input); with `modulated=True` the adaLN gates depend on the timestep non-polynomially, so
only the children's outputs stay quadratic.
"""

import torch
from torch import nn


class QuadraticInTime(nn.Module):
    """(B, T, D) -> a + b t + c t^2 (per token and channel) + `mix` * tanh(W h)."""

    def __init__(self, tokens: int, dim: int, mix: float) -> None:
        super().__init__()
        self.coefficients = nn.Parameter(
            torch.randn(3, tokens, dim) / torch.tensor([1.0, 1e2, 1e5])[:, None, None]
        )
        self.proj = nn.Linear(dim, dim)
        self.mix = mix

    def forward(self, hidden: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t[:, None, None]  # (B, 1, 1)
        a, b, c = self.coefficients
        return a + b * t + c * t * t + self.mix * torch.tanh(self.proj(hidden))


class ToyBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, modulated: bool, mix: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = QuadraticInTime(tokens, dim, mix)
        self.mlp = QuadraticInTime(tokens, dim, mix)
        self.adaLN = nn.Linear(dim, 2 * dim)
        if not modulated:  # gates exactly 1
            nn.init.zeros_(self.adaLN.weight)
            nn.init.zeros_(self.adaLN.bias)

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        gate_attn, gate_mlp = (1 + torch.tanh(self.adaLN(temb)))[:, None].chunk(2, dim=-1)
        hidden_states = hidden_states + gate_attn * self.attn(self.norm(hidden_states), t)
        return hidden_states + gate_mlp * self.mlp(self.norm(hidden_states), t)


class ToyDiT(nn.Module):
    def __init__(self, depth=3, tokens=4, dim=8, modulated=False, mix=0.0, seed=0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.t_embedder = nn.Linear(1, dim)
        self.blocks = nn.ModuleList(ToyBlock(tokens, dim, modulated, mix) for _ in range(depth))
        self.final = nn.Linear(dim, dim)
        self.calls = 0  # how often the real forward ran

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        temb = torch.sin(self.t_embedder(timestep[:, None] / 1000))
        for block in self.blocks:
            hidden_states = block(hidden_states, temb, timestep)
        return self.final(hidden_states)


def nonuniform_timesteps(steps: int) -> list[float]:
    """A shifted rectified-flow-like schedule from 1000 down: spacing varies several-fold."""
    u = torch.linspace(1.0, 0.02, steps, dtype=torch.float64)
    return (1000 * 3 * u / (1 + 2 * u)).tolist()


def run(model, timesteps, hidden, branches=1):
    """Outputs of `model` at each timestep, with `branches` separate calls per step (CFG)."""
    outputs = []
    for t in timesteps:
        timestep = torch.full((hidden.shape[0],), t, dtype=hidden.dtype)
        outputs.append([model(hidden_states=hidden + k, timestep=timestep) for k in range(branches)])
    return outputs


def tiny_dit(perturbation: float = 0.05):
    """A depth-2 native DiT (8x8x4 latents, 10 classes) with every weight nudged off DiT's
    adaLN-Zero init, so that every block matters."""
    from taylorseer.models.dit import DiT

    torch.manual_seed(0)
    model = DiT(
        input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * perturbation)
    return model.eval()
