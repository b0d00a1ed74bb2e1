"""Evaluate the bundled models and write docs/MODELS.md.

    python -m taylorseer.training.report [--per-class 20] [--out docs/MODELS.md]

For each bundled generator: the classifier's accuracy on full-compute samples (per class and
overall) and the FID-proxy (Frechet distance of the classifier's penultimate features) to the
real held-out digits; the training record (steps, time, final loss) from its training.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from taylorseer.bench.metrics import frechet_distance
from taylorseer.models.bundled import BUNDLED_MODELS, load_bundled
from taylorseer.models.classifier import load_classifier
from taylorseer.models.digits import load_digits
from taylorseer.models.weights import bundled_path
from taylorseer.training.variants import VARIANTS


@torch.no_grad()
def evaluate(name: str, per_class: int, seed: int) -> dict:
    classifier = load_classifier(bundled_path("digit-classifier") / "model.safetensors")
    generator = load_bundled(name)
    labels = torch.arange(10).repeat_interleave(per_class)
    images = generator.sample(generator.noise(len(labels), seed), labels, steps=50)
    predicted = classifier(images).argmax(1)
    real, _ = load_digits("held_out")
    return dict(
        accuracy=(predicted == labels).float().mean().item(),
        worst_class_accuracy=min((predicted[labels == c] == c).float().mean().item() for c in range(10)),
        fid_proxy=frechet_distance(classifier.features(images), classifier.features(real)),
        samples=len(labels),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/MODELS.md"))
    args = parser.parse_args()
    classifier_record = json.loads((bundled_path("digit-classifier") / "training.json").read_text())
    with torch.no_grad():
        classifier = load_classifier(bundled_path("digit-classifier") / "model.safetensors")
        train_real, _ = load_digits("train")
        held_real, _ = load_digits("held_out")
        floor = frechet_distance(classifier.features(train_real), classifier.features(held_real))
    lines = [
        "# The bundled models",
        "",
        "Trained on this repo's 2-core CPU machines from scikit-learn's bundled 8x8 digits, upsampled to",
        "16x16 (80 % for training, 20 % held out), reproducible from their seeds (0; 1 for the held-out",
        "models, 2 for the `-narrow` ones), each on one core beside other jobs (train times are wall-clock).",
        "Latents are the lossless space-to-depth (4, 8, 8) of each image. Regenerate this page:",
        "`python -m taylorseer.training.report` (after the training commands below).",
        "",
        "| model | training command | steps | train time | final loss | accuracy | worst class | FID-proxy |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in BUNDLED_MODELS:
        record = json.loads((bundled_path(name) / "training.json").read_text())
        result = evaluate(name, args.per_class, args.seed)
        command = f"variants {name}" if name in VARIANTS else name.replace("-", "_")
        lines.append(
            f"| `{name}` | `python -m taylorseer.training.{command}` | {record['settings']['steps']} | "
            f"{record['train_seconds'] / 60:.0f} min | {record['final_loss']:.4f} | "
            f"{result['accuracy']:.1%} | {result['worst_class_accuracy']:.1%} | {result['fid_proxy']:.2f} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        f"Accuracy and FID-proxy over {args.per_class * 10} full-compute samples ({args.per_class} per class,"
        " 50 steps: DDIM for the `dit-` models at CFG 4, Euler with shift 3 for the `flux-` models at",
        f"CFG 3). The FID-proxy of the real training digits to the held-out ones, the floor, is {floor:.2f}.",
        "`dit-heldout` and `flux-heldout` (other depths, widths and seeds than `dit-digits` and",
        "`flux-digits`) take part in no choice of defaults: they check that the choices carry over.",
        "`dit-narrow` (deeper and narrower) chooses the diffusion placement with `dit-digits`;",
        "`flux-narrow` (narrower, mostly single-stream) is a second flow model for `bench.shape_search`.",
        "`dit-heldout`, smaller and trained for fewer steps, draws less legible digits; for that check",
        "its reference is its own full-compute output, which is all the fidelity numbers compare to.",
        "",
        "Digit classifier (`python -m taylorseer.training.classifier`): "
        f"{classifier_record['settings']['steps']} steps, "
        f"{classifier_record['train_seconds'] / 60:.0f} min, held-out accuracy "
        f"{classifier_record['held_out_accuracy']:.1%}.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
