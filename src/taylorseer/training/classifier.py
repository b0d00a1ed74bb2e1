"""Train the digit classifier on the real training digits; report held-out accuracy.

python -m taylorseer.training.classifier [--steps 3000] [--out src/taylorseer/weights/digit-classifier]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from taylorseer.models.classifier import DigitClassifier
from taylorseer.models.digits import load_digits
from taylorseer.models.weights import BUNDLED
from taylorseer.training.common import TrainingLog, augment, batches


def train(steps: int, seed: int, out: Path) -> float:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, labels = load_digits("train")
    model = DigitClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    log = TrainingLog("digit-classifier", steps=steps, seed=seed, batch_size=128)
    for step, (x, y) in zip(range(steps), batches(images, labels, 128, generator)):
        loss = F.cross_entropy(model(augment(x, generator)), y, label_smoothing=0.05)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        log.step(step, loss.item())
    model.eval()
    held_images, held_labels = load_digits("held_out")
    with torch.no_grad():
        accuracy = (model(held_images).argmax(1) == held_labels).float().mean().item()
    out.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(out / "model.safetensors"))
    log.save(out, held_out_accuracy=round(accuracy, 4))
    print(f"held-out accuracy {accuracy:.4f}")
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=BUNDLED / "digit-classifier")
    args = parser.parse_args()
    train(args.steps, args.seed, args.out)


if __name__ == "__main__":
    main()
