"""Train `flux-digits`: a small FluxTransformer2DModel with rectified flow on the digits.

    python -m taylorseer.training.flux_digits [--steps 6000] [--out src/taylorseer/weights/flux-digits]

Flow matching as in SD3/FLUX: x_sigma = (1 - sigma) x0 + sigma noise, the model predicts
noise - x0, sigma drawn logit-normal. The class (10 = null, dropped with probability 0.1) is fed
through learned text-token and pooled embeddings. Saved: an exponential moving average (0.999)
of the transformer in diffusers format, the class embeddings, and the scheduler config.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
from safetensors.torch import save_file
from torch import Tensor

from taylorseer.models.digits import NUM_CLASSES, load_digits, to_latent
from taylorseer.models.flux_digits import SHIFT, TRANSFORMER_CONFIG, ClassConditioning, pack, velocity
from taylorseer.models.weights import BUNDLED
from taylorseer.training.common import TrainingLog, augment, batches, run_script, train_loop

CLASS_DROPOUT = 0.1


def flow_matching_loss(
    transformer: FluxTransformer2DModel,
    conditioning: ClassConditioning,
    x0: Tensor,
    labels: Tensor,
    generator: torch.Generator,
) -> Tensor:
    """MSE of the predicted velocity to noise - x0 at a logit-normal sigma, labels dropped to null.

    x0: (B, 16, 16) packed latent tokens; labels: (B,). Draws, in order: the class dropout, sigma,
    the noise (the order the bundled weights were trained with)."""
    dropped = torch.rand(len(labels), generator=generator) < CLASS_DROPOUT
    text, pooled = conditioning(torch.where(dropped, NUM_CLASSES, labels))
    sigma = torch.sigmoid(torch.randn(len(labels), generator=generator))  # (B,) logit-normal
    noise = torch.randn(x0.shape, generator=generator)
    x_sigma = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
    return ((velocity(transformer, x_sigma, sigma, text, pooled) - (noise - x0)) ** 2).mean()


def train(
    steps: int,
    seed: int,
    out: Path,
    batch_size: int = 128,
    config: dict[str, Any] = TRANSFORMER_CONFIG,
    name: str = "flux-digits",
) -> None:
    """Train a FluxTransformer2DModel of `config` (and class embeddings) and save it to `out`."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, labels = load_digits("train")
    transformer = FluxTransformer2DModel(**config)
    conditioning = ClassConditioning()
    modules = torch.nn.ModuleList([transformer, conditioning])
    ema = copy.deepcopy(modules).requires_grad_(False)
    optimizer = torch.optim.AdamW(modules.parameters(), lr=1e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    log = TrainingLog(name, steps=steps, seed=seed, batch_size=batch_size, config=config)

    def loss_fn(batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch  # (B, 1, 16, 16) images in [-1, 1], (B,) class labels
        x0 = pack(to_latent(augment(x, generator)))  # (B, 16, 16) tokens
        return flow_matching_loss(transformer, conditioning, x0, y, generator)

    data = batches(images, labels, batch_size, generator)
    train_loop(modules, ema, loss_fn, data, optimizer, schedule, steps, log)
    out.mkdir(parents=True, exist_ok=True)
    ema_transformer, ema_conditioning = ema
    ema_transformer.save_pretrained(out / "transformer")
    save_file(ema_conditioning.state_dict(), str(out / "class_embeddings.safetensors"))
    FlowMatchEulerDiscreteScheduler(shift=SHIFT).save_pretrained(out / "scheduler")
    log.save(out)


def main() -> None:
    run_script(train, __doc__, steps=6000, out=BUNDLED / "flux-digits")


if __name__ == "__main__":
    main()
