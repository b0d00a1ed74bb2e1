"""Train `flux-narrow`: a second FLUX-architecture digit model that helps choose the flow placement.

    python -m taylorseer.training.flux_narrow [--steps 5000] [--seed 2] [--threads 1]

The same recipe and sampler family as `flux-digits` (rectified flow, FlowMatch Euler, shift 3),
narrower and mostly single-stream, with another seed: 1 double-stream and 5 single-stream blocks
of width 64 (flux-digits: 2 and 4 of width 128; flux-heldout: 3 and 3 of width 96). It chooses
placements with flux-digits, so that they fit no one set of weights; flux-heldout has no say.
"""

from __future__ import annotations

from pathlib import Path

from taylorseer.models.flux_digits import TRANSFORMER_CONFIG
from taylorseer.models.weights import BUNDLED
from taylorseer.training.common import run_script
from taylorseer.training.flux_digits import train

NARROW_CONFIG = dict(TRANSFORMER_CONFIG, num_layers=1, num_single_layers=5, num_attention_heads=2)


def train_narrow(steps: int, seed: int, out: Path) -> None:
    train(steps, seed, out, config=NARROW_CONFIG, name="flux-narrow")


def main() -> None:
    run_script(train_narrow, __doc__, steps=5000, out=BUNDLED / "flux-narrow", seed=2)


if __name__ == "__main__":
    main()
