"""How much of a model's output its blocks make, at a few steps of a full-compute run.

    python -m taylorseer.bench.block_share --out docs/BLOCKS.md

At each chosen step the model is called again on that step's inputs with every block passing its
input streams through unchanged; the share is |output - that output| / |output|. The rest of the
output is the path from the step's latents through the embedding and the final layer that no
block touches. A whole-output forecast (granularity "model") forecasts that path too; per-module
and per-block forecasts compute it exactly and forecast only the blocks' part. Where the blocks
make a small share of the output, the per-module error shrinks by about that share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from taylorseer.bench.subjects import FAMILIES, large_flux_subject
from taylorseer.models.bundled import load_bundled
from taylorseer.wiring.discovery import Block, discover_blocks
from taylorseer.wiring.forwards import Forward, wrap_forward
from taylorseer.wiring.streams import assemble, stream_inputs

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # where in the run the share is measured


def _main_output(output: Any) -> Tensor:
    """The prediction in a model's return value: a tensor, the first of a tuple, or `.sample`."""
    return output[0] if isinstance(output, tuple) else getattr(output, "sample", output)


def _passing_through(block: Block) -> Forward:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return assemble(block, stream_inputs(block, args, kwargs))

    return forward


def block_shares(model: nn.Module, sample: Callable[[int], Any], steps: int) -> list[float]:
    """The blocks' share of `model`'s output at `FRACTIONS` of a `steps`-step run of `sample`."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def recording(original: Forward) -> Forward:
        def forward(*args: Any, **kwargs: Any) -> Any:
            calls.append((args, kwargs))
            return original(*args, **kwargs)

        return forward

    undo = wrap_forward(model, recording)
    try:
        with torch.no_grad():
            sample(steps)
    finally:
        undo()
    if not calls:
        raise ValueError(f"{type(model).__name__} was not called while sampling")
    shares = []
    for fraction in FRACTIONS:
        args, kwargs = calls[round(fraction * (len(calls) - 1))]
        with torch.no_grad():
            full = _main_output(model(*args, **kwargs))
            undos = [
                wrap_forward(block.module, lambda _, b=block: _passing_through(b))
                for block in discover_blocks(model)
            ]
            try:
                direct = _main_output(model(*args, **kwargs))
            finally:
                for each in reversed(undos):
                    each()
        shares.append(float((full - direct).norm() / full.norm()))
    return shares


def model_and_sampler(name: str, samples: int) -> tuple[nn.Module, Callable[[int], Any]]:
    """The model and its full-compute sampler (steps -> samples), with no scorer to load."""
    if name == "flux-large":
        subject = large_flux_subject()
        return subject.transformer, subject.sample
    generator = load_bundled(name)
    noise, labels = generator.noise(samples, 0), torch.arange(samples) % 10
    return generator.transformer, lambda steps: generator.sample(noise, labels, steps=steps)


def markdown(rows: dict[str, list[float]], steps: int) -> str:
    header = " | ".join(f"{f:.0%} of the run" for f in FRACTIONS)
    lines = [
        "# How much of the output the blocks make",
        "",
        f"`python -m taylorseer.bench.block_share {' '.join(sys.argv[1:])}`. For each model, at calls of a",
        f"{steps}-step full-compute run: |output - output with every block passed through| / |output|.",
        "The rest of the output is the path from the latents through the embedding and the final layer.",
        "",
        f"| model | {header} |",
        "|---|" + "---:|" * len(FRACTIONS),
    ]
    lines += [f"| {name} | " + " | ".join(f"{s:.3f}" for s in shares) + " |" for name, shares in rows.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(["flux-large", *FAMILIES]))
    parser.add_argument("--samples", type=int, default=8, help="samples per bundled model")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out")
    args = parser.parse_args()
    rows = {}
    for name in args.models.split(","):
        rows[name] = block_shares(*model_and_sampler(name, args.samples), args.steps)
    text = markdown(rows, args.steps)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
