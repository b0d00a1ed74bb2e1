"""Train `dit-narrow`: a second DiT digit model that helps choose the diffusion placement.

    python -m taylorseer.training.dit_narrow [--steps 5000] [--seed 2] [--threads 1]

The same recipe and sampler as `dit-digits` (ADM hybrid loss, learned sigma, DDIM), deeper and
narrower, with another seed: 7 blocks of width 80 with 4 heads (dit-digits: 6 of width 128;
dit-heldout: 5 of width 96). The diffusion placement is chosen on dit-digits and this model
together, so that it fits no one set of weights; dit-heldout still has no say.
"""

from __future__ import annotations

from pathlib import Path

from taylorseer.models.weights import BUNDLED
from taylorseer.training.common import run_script
from taylorseer.training.dit_digits import ARCHITECTURE, train

NARROW_ARCHITECTURE = dict(ARCHITECTURE, hidden_size=80, depth=7, num_heads=4)


def train_narrow(steps: int, seed: int, out: Path) -> None:
    train(steps, seed, out, architecture=NARROW_ARCHITECTURE, name="dit-narrow")


def main() -> None:
    run_script(train_narrow, __doc__, steps=5000, out=BUNDLED / "dit-narrow", seed=2)


if __name__ == "__main__":
    main()
