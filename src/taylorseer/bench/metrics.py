"""Fidelity metrics against the full-compute output of the same seeds."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def psnr(output: Tensor, reference: Tensor, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB over the whole batch (images in [-1, 1]: range 2)."""
    mse = torch.mean((output.double() - reference.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def relative_l2(output: Tensor, reference: Tensor) -> float:
    """||output - reference|| / ||reference||."""
    return ((output.double() - reference.double()).norm() / reference.double().norm()).item()


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D): the FID formula."""
    import numpy as np
    from scipy import linalg

    a, b = features_a.double().numpy(), features_b.double().numpy()
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    mean_gap = ((a.mean(0) - b.mean(0)) ** 2).sum()
    return float(mean_gap + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def ssim(output: Tensor, reference: Tensor, data_range: float = 2.0) -> float:
    """Mean structural similarity (scikit-image) over a batch of (N, C, H, W) images."""
    from skimage.metrics import structural_similarity

    pairs = zip(output.double().numpy(), reference.double().numpy())
    values = [structural_similarity(a, b, data_range=data_range, channel_axis=0) for a, b in pairs]
    return float(sum(values) / len(values))
