"""Train `dit-digits`: a class-conditional DiT (learned sigma) on the 32x32 digits.

    python -m taylorseer.training.dit_digits [--steps 7000] [--out src/taylorseer/weights/dit-digits]

ADM's hybrid objective, as DiT trains: MSE on the predicted noise plus the variational bound
term for the learned variances (with the mean held fixed), over T=1000 linear-beta steps. The
saved weights are an exponential moving average (decay 0.999).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from taylorseer.models.digits import LATENT_CHANNELS, LATENT_SIZE, NUM_CLASSES, load_digits, to_latent
from taylorseer.models.dit import DiT
from taylorseer.models.gaussian_diffusion import GaussianDiffusion
from taylorseer.models.weights import BUNDLED
from taylorseer.training.common import TrainingLog, augment, batches, run_script, train_loop

ARCHITECTURE = dict(
    input_size=LATENT_SIZE, patch_size=2, in_channels=LATENT_CHANNELS, hidden_size=128, depth=6,
    num_heads=4, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=NUM_CLASSES, learn_sigma=True,
)  # fmt: skip


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise, in nats."""
    return 0.5 * (
        -1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def hybrid_loss(model: DiT, diffusion: GaussianDiffusion, x0: Tensor, labels: Tensor, generator) -> Tensor:
    """MSE(eps) + the bound term of the learned variance, averaged over a batch at random t."""
    n = x0.shape[0]
    t = torch.randint(0, diffusion.num_steps, (n,), generator=generator)  # respaced "1000": j == t
    noise = torch.randn(x0.shape, generator=generator)
    abar = diffusion.alphas_cumprod.float()[t][:, None, None, None]
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    eps, var_values = model(x_t, t, labels).split(LATENT_CHANNELS, dim=1)
    mse = ((eps - noise) ** 2).mean(dim=(1, 2, 3))

    def at(table: Tensor) -> Tensor:
        return table.float()[t][:, None, None, None]

    coef1, coef2 = at(diffusion.posterior_mean_coef1), at(diffusion.posterior_mean_coef2)
    true_mean = coef1 * x0 + coef2 * x_t
    true_logvar = at(diffusion.posterior_log_variance_clipped)
    x0_pred = at(diffusion.sqrt_recip_abar) * x_t - at(diffusion.sqrt_recipm1_abar) * eps.detach()
    model_mean = coef1 * x0_pred + coef2 * x_t  # the mean is trained by the MSE alone
    frac = (var_values + 1) / 2
    model_logvar = frac * at(diffusion.log_betas) + (1 - frac) * true_logvar
    kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar).mean(dim=(1, 2, 3)) / math.log(2.0)
    nll = 0.5 * (math.log(2 * math.pi) + model_logvar + (x0 - model_mean) ** 2 / model_logvar.exp())
    vb = torch.where(t == 0, nll.mean(dim=(1, 2, 3)) / math.log(2.0), kl)  # decoder term at t = 0
    return (mse + vb).mean()


def train(
    steps: int,
    seed: int,
    out: Path,
    batch_size: int = 128,
    architecture: dict | None = None,
    name: str = "dit-digits",
) -> None:
    architecture = ARCHITECTURE if architecture is None else architecture
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, labels = load_digits("train")
    model = DiT(**architecture)
    ema = copy.deepcopy(model).requires_grad_(False)
    diffusion = GaussianDiffusion("1000")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    log = TrainingLog(name, steps=steps, seed=seed, batch_size=batch_size, architecture=architecture)

    def loss_fn(batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch  # (B, 1, 16, 16) images in [-1, 1], (B,) class labels
        return hybrid_loss(model, diffusion, to_latent(augment(x, generator)), y, generator)

    data = batches(images, labels, batch_size, generator)
    train_loop(model, ema, loss_fn, data, optimizer, schedule, steps, log)
    out.mkdir(parents=True, exist_ok=True)
    save_file(ema.state_dict(), str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(architecture, indent=2) + "\n")
    log.save(out)


def main() -> None:
    run_script(train, __doc__, steps=7000, out=BUNDLED / "dit-digits")


if __name__ == "__main__":
    main()
