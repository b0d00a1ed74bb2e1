"""Train `flux-heldout`: a FLUX-architecture digit model that takes part in no choice of ours.

    python -m taylorseer.training.flux_heldout [--steps 5000] [--seed 1] [--threads 1]

The same recipe and sampler family as `flux-digits` (rectified flow, FlowMatch Euler, shift 3),
with another depth, width and seed: 3 double-stream and 3 single-stream blocks of width 96
(flux-digits: 2 and 4 of width 128). Defaults and calibrated placements are chosen on the other
bundled models only; this one is used to check that they carry over to weights that had no say.
"""

from __future__ import annotations

from pathlib import Path

from taylorseer.models.flux_digits import TRANSFORMER_CONFIG
from taylorseer.models.weights import BUNDLED
from taylorseer.training.common import run_script
from taylorseer.training.flux_digits import train

HELDOUT_CONFIG = dict(TRANSFORMER_CONFIG, num_layers=3, num_single_layers=3, num_attention_heads=3)


def train_heldout(steps: int, seed: int, out: Path) -> None:
    train(steps, seed, out, config=HELDOUT_CONFIG, name="flux-heldout")


def main() -> None:
    run_script(train_heldout, __doc__, steps=5000, out=BUNDLED / "flux-heldout", seed=1)


if __name__ == "__main__":
    main()
