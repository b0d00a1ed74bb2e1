"""The offline data of the bundled models: scikit-learn's 8x8 digits, upsampled to 16x16.

Images live in [-1, 1], shape (N, 1, 16, 16). The bundled models work on a "latent" made by a
lossless space-to-depth (pixel unshuffle by 2): (N, 4, 8, 8) — the channel count and layout
of a Stable-Diffusion VAE latent, without a VAE to train or download.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGE_SIZE = 16
LATENT_CHANNELS = 4
LATENT_SIZE = IMAGE_SIZE // 2
NUM_CLASSES = 10
HELD_OUT_FRACTION = 0.2  # real digits never used to train a generator


def load_digits(split: str = "train", seed: int = 0) -> tuple[Tensor, Tensor]:
    """(images (N, 1, 16, 16) in [-1, 1], labels (N,)) of the `train` or `held_out` split."""
    if split not in ("train", "held_out", "all"):
        raise ValueError(f"split must be 'train', 'held_out' or 'all', got {split!r}")
    from sklearn.datasets import load_digits as sklearn_digits  # offline: ships with scikit-learn

    data = sklearn_digits()
    images = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    images = F.interpolate(images, size=IMAGE_SIZE, mode="bilinear", align_corners=False)
    images = images.clamp(0, 1) * 2 - 1
    labels = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    held_out = int(len(labels) * HELD_OUT_FRACTION)
    chosen = {"train": order[held_out:], "held_out": order[:held_out], "all": order}[split]
    return images[chosen], labels[chosen]


def to_latent(images: Tensor) -> Tensor:
    """(N, 1, 16, 16) -> (N, 4, 8, 8), lossless."""
    return F.pixel_unshuffle(images, 2)


def to_images(latents: Tensor) -> Tensor:
    """(N, 4, 8, 8) -> (N, 1, 16, 16), clamped to [-1, 1]."""
    return F.pixel_shuffle(latents, 2).clamp(-1, 1)
