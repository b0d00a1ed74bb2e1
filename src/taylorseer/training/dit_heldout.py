"""Train `dit-heldout`: a DiT digit model that takes part in no choice of ours.

    python -m taylorseer.training.dit_heldout [--steps 5000] [--seed 1] [--threads 1]

The same recipe and sampler as `dit-digits` (ADM hybrid loss, learned sigma, DDIM), with another
depth, width and seed: 5 blocks of width 96 with 3 heads (dit-digits: 6 of width 128, 4 heads).
Defaults and calibrated placements are chosen on dit-digits and flux-digits only; this one checks
that they carry over to DDIM weights that had no say.
"""

from __future__ import annotations

from pathlib import Path

from taylorseer.models.weights import BUNDLED
from taylorseer.training.common import run_script
from taylorseer.training.dit_digits import ARCHITECTURE, train

HELDOUT_ARCHITECTURE = dict(ARCHITECTURE, hidden_size=96, depth=5, num_heads=3)


def train_heldout(steps: int, seed: int, out: Path) -> None:
    train(steps, seed, out, architecture=HELDOUT_ARCHITECTURE, name="dit-heldout")


def main() -> None:
    run_script(train_heldout, __doc__, steps=5000, out=BUNDLED / "dit-heldout", seed=1)


if __name__ == "__main__":
    main()
