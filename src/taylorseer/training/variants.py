"""Train a variant of a bundled model: the same recipe and sampler, another size and seed.

    python -m taylorseer.training.variants NAME [--steps 5000] [--seed S] [--threads 1] [--out DIR]

`dit-heldout` and `flux-heldout` take part in no choice of ours: they check that defaults and
calibrated placements chosen on the other models carry over to weights that had no say.
`dit-narrow` and `flux-narrow` choose placements together with `dit-digits` and `flux-digits`
(`bench.shape_search`, `bench.placement_sweep`), so that a placement fits no one set of weights.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from taylorseer.models.weights import BUNDLED
from taylorseer.training import dit_digits, flux_digits
from taylorseer.training.common import run_script

STEPS = 5000


@dataclass(frozen=True)
class Variant:
    recipe: str  # "dit": training.dit_digits (DDIM); "flux": training.flux_digits (flow matching)
    changes: dict[str, int] = field(hash=False)  # what differs from the recipe's architecture
    seed: int


# dit-digits: 6 blocks of width 128, 4 heads; flux-digits: 2 double- and 4 single-stream blocks,
# 4 heads of 32 (width 128).
VARIANTS = {
    "dit-heldout": Variant("dit", dict(hidden_size=96, depth=5, num_heads=3), seed=1),
    "dit-narrow": Variant("dit", dict(hidden_size=80, depth=7, num_heads=4), seed=2),
    "flux-heldout": Variant("flux", dict(num_layers=3, num_single_layers=3, num_attention_heads=3), seed=1),
    "flux-narrow": Variant("flux", dict(num_layers=1, num_single_layers=5, num_attention_heads=2), seed=2),
}


def train_variant(name: str, steps: int, seed: int, out: Path) -> None:
    variant = VARIANTS[name]
    if variant.recipe == "dit":
        architecture = dict(dit_digits.ARCHITECTURE, **variant.changes)
        dit_digits.train(steps, seed, out, architecture=architecture, name=name)
    else:
        config = dict(flux_digits.TRANSFORMER_CONFIG, **variant.changes)
        flux_digits.train(steps, seed, out, config=config, name=name)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", choices=sorted(VARIANTS))
    known, rest = parser.parse_known_args()
    seed = VARIANTS[known.name].seed
    run_script(partial(train_variant, known.name), __doc__, STEPS, BUNDLED / known.name, seed, argv=rest)


if __name__ == "__main__":
    main()
