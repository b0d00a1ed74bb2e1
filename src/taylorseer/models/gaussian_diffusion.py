"""The ADM Gaussian diffusion DiT samples with, written from the equations.

Ho et al. 2020 (DDPM), Nichol & Dhariwal 2021 (learned variances, respacing), Song et al. 2021
(DDIM). Settings are DiT's ``create_diffusion``: linear betas over T=1000 training steps,
eps prediction, learned-range variances, no clipping of the predicted x0.

Notation: abar_t = prod_{s<=t} (1 - beta_s). Schedules are float64 CPU tensors indexed by the
*respaced* index j (0 = least noisy); the step methods take the loop position i = S - 1 - j so
``timesteps[i]`` is the original training timestep the model is called with at step i.
Steps read their coefficients as Python floats, so a step adds no device synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

F64 = torch.float64


def linear_betas(num_steps: int = 1000) -> Tensor:
    """ADM "linear" schedule (T,) float64: betas 1e-4 -> 0.02 for T=1000, scaled by 1000/T."""
    scale = 1000 / num_steps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=F64)


def space_timesteps(num_steps: int, spec: str) -> list[int]:
    """Training timesteps kept by ADM's respacing rule, ascending.

    ``spec`` is "ddimN" (the DDIM paper's integer stride giving exactly N steps) or
    comma-separated counts: the T steps are cut into equal sections and section k keeps
    count_k steps evenly spread over it, first and last included, rounded to integers.
    """
    if spec.startswith("ddim"):
        count = int(spec[len("ddim") :])
        for stride in range(1, num_steps):
            if len(range(0, num_steps, stride)) == count:
                return list(range(0, num_steps, stride))
        raise ValueError(f"cannot take exactly {count} steps of {num_steps} with an integer stride")
    counts = [int(c) for c in spec.split(",")]
    size_per, extra = divmod(num_steps, len(counts))
    kept: list[int] = []
    start = 0
    for k, count in enumerate(counts):
        size = size_per + (1 if k < extra else 0)
        if not 0 < count <= size:
            raise ValueError(f"cannot take {count} steps from a section of {size} ({spec!r})")
        stride = (size - 1) / (count - 1) if count > 1 else 1.0
        cur = 0.0
        for _ in range(count):
            kept.append(start + round(cur))  # round half to even, as ADM
            cur += stride
        start += size
    return sorted(set(kept))


def prepend_one(x: Tensor) -> Tensor:
    """(S,) -> (S,): [1, x_0, ..., x_{S-2}], i.e. the "previous" value with abar_{-1} = 1."""
    return torch.cat([x.new_ones(1), x[:-1]])


def respace_betas(alphas_cumprod: Tensor, kept: Sequence[int]) -> Tensor:
    """Betas (S,) of the chain visiting only ``kept``: beta'_j = 1 - abar_{k_j} / abar_{k_{j-1}}."""
    abar = alphas_cumprod[list(kept)]
    return 1.0 - abar / prepend_one(abar)


def split_model_output(model_out: Tensor, channels: int) -> tuple[Tensor, Tensor | None]:
    """(N, C or 2C, H, W) -> eps (N, C, H, W) and learned-variance values (or None if fixed)."""
    if model_out.shape[1] == channels:
        return model_out, None
    eps, var_values = model_out.split(channels, dim=1)
    return eps, var_values


class GaussianDiffusion:
    """A respaced ADM diffusion: schedules plus one DDIM (eta=0) and one DDPM reverse step."""

    def __init__(self, respacing: str = "50", num_train_steps: int = 1000):
        kept = space_timesteps(num_train_steps, respacing)
        betas = respace_betas(torch.cumprod(1.0 - linear_betas(num_train_steps), 0), kept)
        abar = torch.cumprod(1.0 - betas, 0)  # (S,), equals the kept abar up to round-off
        abar_prev = prepend_one(abar)
        self.num_steps = len(kept)
        self.timesteps: list[int] = kept[::-1]  # original indices, sampling order (descending)
        self.betas = betas
        self.alphas_cumprod = abar
        self.alphas_cumprod_prev = abar_prev
        # x0 = sqrt(1/abar) x - sqrt(1/abar - 1) eps
        self.sqrt_recip_abar = (1.0 / abar).sqrt()
        self.sqrt_recipm1_abar = (1.0 / abar - 1.0).sqrt()
        # q(x_{j-1} | x_j, x0) = N(coef1 x0 + coef2 x_j, posterior_variance)
        posterior_variance = betas * (1.0 - abar_prev) / (1.0 - abar)
        self.posterior_mean_coef1 = betas * abar_prev.sqrt() / (1.0 - abar)
        self.posterior_mean_coef2 = (1.0 - abar_prev) * (1.0 - betas).sqrt() / (1.0 - abar)
        # The j=0 posterior variance is 0; ADM repeats j=1's value so the log stays finite
        # (it is never used: the last step adds no noise).
        first = posterior_variance[1:2] if self.num_steps > 1 else betas[:1]
        self.posterior_log_variance_clipped = torch.cat([first, posterior_variance[1:]]).log()
        # Variance used when the model does not predict one (ADM "fixed large").
        self.fixed_large_log_variance = torch.cat([first, betas[1:]]).log()
        self.log_betas = betas.log()

    def _index(self, i: int) -> int:
        """Loop position i (0 = noisiest) -> respaced index j."""
        if not 0 <= i < self.num_steps:
            raise IndexError(f"step {i} out of range for {self.num_steps} steps")
        return self.num_steps - 1 - i

    def predict_x0(self, x: Tensor, eps: Tensor, i: int) -> Tensor:
        """x0 = (x - sqrt(1 - abar) eps) / sqrt(abar) at loop position i (no clipping)."""
        j = self._index(i)
        return float(self.sqrt_recip_abar[j]) * x - float(self.sqrt_recipm1_abar[j]) * eps

    def ddim_step(self, model_out: Tensor, x: Tensor, i: int) -> Tensor:
        """Deterministic DDIM (eta=0) update of x (N, C, H, W) at loop position i.

        x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps, with eps re-derived from x0
        as ADM does (identical up to round-off without clipping).
        """
        j = self._index(i)
        eps, _ = split_model_output(model_out, x.shape[1])
        x0 = self.predict_x0(x, eps, i)
        eps = (float(self.sqrt_recip_abar[j]) * x - x0) / float(self.sqrt_recipm1_abar[j])
        abar_prev = float(self.alphas_cumprod_prev[j])
        return math.sqrt(abar_prev) * x0 + math.sqrt(1.0 - abar_prev) * eps

    def ddpm_step(self, model_out: Tensor, x: Tensor, i: int, noise: Tensor) -> Tensor:
        """Ancestral DDPM update: posterior mean plus model std times ``noise`` (N, C, H, W).

        Learned range (Nichol & Dhariwal): log var = f log(beta) + (1 - f) log(posterior var)
        with f = (v + 1) / 2 from the model's variance channels v. The last step (j=0) returns
        the mean, so its noise is ignored.
        """
        j = self._index(i)
        eps, var_values = split_model_output(model_out, x.shape[1])
        x0 = self.predict_x0(x, eps, i)
        mean = float(self.posterior_mean_coef1[j]) * x0 + float(self.posterior_mean_coef2[j]) * x
        if j == 0:
            return mean
        if var_values is None:
            std = math.exp(0.5 * float(self.fixed_large_log_variance[j]))
            return mean + std * noise
        frac = (var_values + 1) / 2
        max_log, min_log = float(self.log_betas[j]), float(self.posterior_log_variance_clipped[j])
        log_variance = frac * max_log + (1 - frac) * min_log
        return mean + torch.exp(0.5 * log_variance) * noise
