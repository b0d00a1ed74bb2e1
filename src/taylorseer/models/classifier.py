"""A small digit classifier: the offline stand-in for FID and prompt scorers.

Its accuracy on samples says whether a generator drew the requested class; the Frechet
distance between its penultimate features of samples and of real held-out digits is the
FID-proxy.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from taylorseer.models.digits import NUM_CLASSES
from taylorseer.models.weights import load_safetensors

FEATURES = 64


class DigitClassifier(nn.Module):
    """(N, 1, 16, 16) images in [-1, 1] -> (N, 10) logits."""

    def __init__(self) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GELU(), nn.MaxPool2d(2))

        self.trunk = nn.Sequential(stage(1, 32), stage(32, 64), nn.Flatten())  # (N, 64 * 4 * 4)
        self.penultimate = nn.Sequential(nn.Linear(64 * 4 * 4, FEATURES), nn.GELU())
        self.head = nn.Linear(FEATURES, NUM_CLASSES)

    def features(self, images: Tensor) -> Tensor:
        """(N, 1, 16, 16) -> (N, 64) penultimate features."""
        return self.penultimate(self.trunk(images))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


def load_classifier(path: str | Path) -> DigitClassifier:
    model = DigitClassifier()
    model.load_state_dict(load_safetensors(path, model.state_dict()))
    return model.eval()
