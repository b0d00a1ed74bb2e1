"""The models `taylorseer bench` runs on: the bundled ones and a large random FLUX."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import FluxTransformer2DModel
from torch import Tensor

from taylorseer.bench.harness import Subject
from taylorseer.bench.metrics import frechet_distance
from taylorseer.models import flux_digits
from taylorseer.models.bundled import load_bundled
from taylorseer.models.classifier import load_classifier
from taylorseer.models.digits import load_digits
from taylorseer.models.weights import bundled_path

FAMILIES = {"dit-digits": "dit", "flux-digits": "flux"}


def digit_scorer() -> Callable[[Tensor, Tensor], dict[str, float]]:
    """(images (N, 1, 16, 16), requested labels (N,)) -> classifier accuracy and FID-proxy to the
    real held-out digits."""
    classifier = load_classifier(bundled_path("digit-classifier") / "model.safetensors")
    real, _ = load_digits("held_out")
    with torch.no_grad():
        real_features = classifier.features(real)

    @torch.no_grad()
    def scorer(images: Tensor, labels: Tensor) -> dict[str, float]:
        accuracy = (classifier(images).argmax(1) == labels).float().mean().item()
        return dict(accuracy=accuracy, fid_proxy=frechet_distance(classifier.features(images), real_features))

    return scorer


def clip_scorer(folder: Path) -> Callable[[Tensor, list[str]], dict[str, float]]:
    """(images (N, C, H, W) in [-1, 1], their prompts) -> torchmetrics' CLIP score, with the CLIP
    model and processor of a local folder (as `save_pretrained` writes them; nothing is downloaded)."""
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    if not (Path(folder) / "config.json").is_file():
        raise ValueError(f"--scorer {str(folder)!r} is not a CLIP model folder (no config.json)")

    class ProjectedFeatures(CLIPModel):
        """torchmetrics 1.9 takes tensors from get_*_features, transformers 5 returns model outputs
        (torchmetrics issue #3407, fixed after 1.9): hand it the projected embeddings."""

        def get_image_features(self, *args: Any, **kwargs: Any) -> Tensor:
            return _projected(super().get_image_features(*args, **kwargs))

        def get_text_features(self, *args: Any, **kwargs: Any) -> Tensor:
            return _projected(super().get_text_features(*args, **kwargs))

    def load() -> tuple[CLIPModel, CLIPProcessor]:
        model = ProjectedFeatures.from_pretrained(folder, local_files_only=True).eval()
        return model, CLIPProcessor.from_pretrained(folder, local_files_only=True)

    metric = CLIPScore(model_name_or_path=load)

    @torch.no_grad()
    def scorer(images: Tensor, prompts: list[str]) -> dict[str, float]:
        pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # the processor's range
        pixels = pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels
        metric.reset()
        return dict(clip_score=float(metric(list(pixels), prompts)))

    return scorer


def _projected(features: Any) -> Tensor:
    return features if isinstance(features, Tensor) else features.pooler_output


def bundled_subject(name: str, samples: int, seed: int, clip_folder: Path | None = None) -> Subject:
    """A bundled model sampling `samples` digits (classes cycling 0-9) from fixed seeds; with
    `clip_folder`, the CLIP score of each image against "a handwritten digit <label>" too."""
    generator = load_bundled(name)
    labels = torch.arange(samples) % 10
    noise = generator.noise(samples, seed)
    digits = digit_scorer()
    clip = clip_scorer(clip_folder) if clip_folder is not None else None
    prompts = [f"a handwritten digit {label}" for label in labels.tolist()]

    def scorer(images: Tensor) -> dict[str, float]:
        return {**digits(images, labels), **(clip(images, prompts) if clip else {})}

    return Subject(
        name=name,
        family=FAMILIES[name],
        transformer=generator.transformer,
        sample=lambda steps: generator.sample(noise, labels, steps=steps),
        scorer=scorer,
    )


LARGE_FLUX = dict(
    patch_size=1, in_channels=16, num_layers=2, num_single_layers=4, attention_head_dim=64,
    num_attention_heads=4, joint_attention_dim=256, pooled_projection_dim=256,
    guidance_embeds=False, axes_dims_rope=(16, 24, 24),
)  # fmt: skip
LARGE_LATENT = (4, 64, 64)  # packed 2x2: 1024 image tokens


def large_flux_subject(seed: int = 0, batch: int = 1) -> Subject:
    """A random-weight FLUX transformer with 1024 image tokens, where compute dominates."""
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(**LARGE_FLUX).eval()
    conditioning = flux_digits.ClassConditioning(joint_dim=256, pooled_dim=256).eval()
    labels = torch.arange(batch) % 10
    noise = torch.randn(batch, *LARGE_LATENT, generator=torch.Generator().manual_seed(seed))

    def sample(steps: int) -> Tensor:
        latents = flux_digits.sample(transformer, conditioning, noise, labels, steps=steps)
        return latents / latents.abs().amax().clamp(min=1e-6)  # scaled into [-1, 1] for PSNR

    return Subject("flux-large", "flux", transformer, sample)
