"""The models `taylorseer bench` runs on: the bundled ones and a large random FLUX."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from taylorseer.api import maybe_applied
from taylorseer.bench.harness import STEPS, Subject
from taylorseer.bench.metrics import frechet_distance
from taylorseer.config import TaylorSeerConfig
from taylorseer.models import flux_digits
from taylorseer.models.bundled import BUNDLED_MODELS, load_bundled
from taylorseer.models.classifier import FEATURES, load_classifier
from taylorseer.models.digits import load_digits
from taylorseer.models.weights import bundled_path

FAMILIES = {name: name.split("-")[0] for name in BUNDLED_MODELS}  # bundled model -> "dit" | "flux"
# The modules our granularity "module" caches, as regexes for diffusers' TaylorSeerCache.
SAME_MODULES = {
    "dit": dict(identifiers=[r"blocks\.\d+\.(attn|mlp)"]),
    "flux": dict(
        identifiers=[
            r"transformer_blocks\.\d+\.(attn|ff|ff_context)",
            r"single_transformer_blocks\.\d+\.proj_out",
        ],
        skip_identifiers=[r"single_transformer_blocks\.\d+\.(attn|proj_mlp)"],
    ),
}
CALIBRATION_SAMPLES = 12  # calibration runs on these few samples, from seeds apart from the bench's
CALIBRATION_SEED_OFFSET = 10_000
# The FID-proxy fits a covariance of the classifier's features to the samples: below one sample
# more than there are features it is singular (and at 1 sample undefined), so the column is left out.
FID_MIN_SAMPLES = FEATURES + 1
BOOTSTRAP = 20  # resamplings of the samples that estimate the FID-proxy's sampling noise


def digit_scorer(fid: bool = True) -> Callable[[Tensor, Tensor], dict[str, float]]:
    """(images (N, 1, 16, 16), requested labels (N,)) -> classifier accuracy and, with `fid`,
    the FID-proxy to the real held-out digits and its sampling noise (`fid_proxy_noise`: the
    standard deviation of the FID-proxy over bootstrap resamplings of the N images)."""
    classifier = load_classifier(bundled_path("digit-classifier") / "model.safetensors")
    real, _ = load_digits("held_out")
    with torch.no_grad():
        real_features = classifier.features(real)

    @torch.no_grad()
    def scorer(images: Tensor, labels: Tensor) -> dict[str, float]:
        accuracy = (classifier(images).argmax(1) == labels).float().mean().item()
        if not fid:
            return dict(accuracy=accuracy)
        features = classifier.features(images)
        seeded = torch.Generator().manual_seed(0)
        draws = torch.randint(len(features), (BOOTSTRAP, len(features)), generator=seeded)
        noise = torch.tensor([frechet_distance(features[draw], real_features) for draw in draws]).std()
        distance = frechet_distance(features, real_features)
        return dict(accuracy=accuracy, fid_proxy=distance, fid_proxy_noise=noise.item())

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
    `clip_folder`, the CLIP score of each image against "a handwritten digit <label>" too. With
    fewer than `FID_MIN_SAMPLES` samples there is no FID-proxy."""
    generator = load_bundled(name)
    labels = torch.arange(samples) % 10
    noise = generator.noise(samples, seed)
    digits = digit_scorer(fid=samples >= FID_MIN_SAMPLES)
    clip = clip_scorer(clip_folder) if clip_folder is not None else None
    prompts = [f"a handwritten digit {label}" for label in labels.tolist()]

    def scorer(images: Tensor) -> dict[str, float]:
        return {**digits(images, labels), **(clip(images, prompts) if clip else {})}

    calibration_noise = generator.noise(CALIBRATION_SAMPLES, seed + CALIBRATION_SEED_OFFSET)
    calibration_labels = torch.arange(CALIBRATION_SAMPLES) % 10

    def calibration(config: TaylorSeerConfig | None) -> Tensor:
        with maybe_applied(generator.transformer, config):
            return generator.sample(calibration_noise, calibration_labels, steps=STEPS)

    return Subject(
        name=name,
        family=FAMILIES[name],
        transformer=generator.transformer,
        sample=lambda steps: generator.sample(noise, labels, steps=steps),
        scorer=scorer,
        calibration=calibration,
    )


LARGE_FLUX = dict(
    patch_size=1, in_channels=16, num_layers=2, num_single_layers=4, attention_head_dim=64,
    num_attention_heads=4, joint_attention_dim=256, pooled_projection_dim=256,
    guidance_embeds=False, axes_dims_rope=(16, 24, 24),
)  # fmt: skip
LARGE_LATENT = (4, 64, 64)  # packed 2x2: 1024 image tokens


def large_flux_subject(seed: int = 0, batch: int = 1) -> Subject:
    """A random-weight FLUX transformer with 1024 image tokens, where compute dominates."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(**LARGE_FLUX).eval()
    conditioning = flux_digits.ClassConditioning(joint_dim=256, pooled_dim=256).eval()
    labels = torch.arange(batch) % 10
    noise = torch.randn(batch, *LARGE_LATENT, generator=torch.Generator().manual_seed(seed))

    def sample(steps: int) -> Tensor:
        latents = flux_digits.sample(transformer, conditioning, noise, labels, steps=steps)
        return latents / latents.abs().amax().clamp(min=1e-6)  # scaled into [-1, 1] for PSNR

    return Subject("flux-large", "flux", transformer, sample)
