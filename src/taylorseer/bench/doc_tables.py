"""What the tools that write the docs' tables share: their command line and their output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch


def table_parser(doc: str | None, models: str, samples: int, seed: int) -> argparse.ArgumentParser:
    """--models, --samples, --seed, --threads and --out, with the tool's defaults."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=models)
    parser.add_argument("--samples", type=int, default=samples)
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    return parser


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments, with torch's thread count set from --threads."""
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args


def how_made(module: str, seconds: float) -> str:
    """The start of a page's first line: "`python -m <module> <this run's arguments>` (<minutes> min
    on this repo's 2-core CPU"; the caller says what else it knows of the run and closes it."""
    return f"`python -m {module} {' '.join(sys.argv[1:])}` ({seconds / 60:.0f} min on this repo's 2-core CPU"


def write_table(text: str, rows: list[dict], out: Path | None) -> None:
    """Print the table; with `out`, write it there and its rows beside it as JSON."""
    print(text)
    if out:
        out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
        out.write_text(text + "\n")
