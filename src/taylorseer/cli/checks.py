"""Checks of the command line's options, made before any compute: each raises ValueError naming the
bad value."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch

from taylorseer.distributed.context_parallel import CONTEXT_PARALLEL
from taylorseer.distributed.group import launched, world_size


def check_writable(path: Path) -> None:
    """Fail before any compute when `path` cannot be written."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"--output {str(path)!r} is a directory; give a .png file path")
    if not folder.is_dir():
        raise ValueError(f"--output {str(path)!r}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--output {str(path)!r}: the folder {str(folder)!r} is not writable")


def check_launch(
    model: str, bundled: bool, cfg_parallel: bool = False, context_parallel: str | None = None
) -> None:
    """ValueError for a `generate` launch that cannot be spread over the ranks, before any work.

    Bundled models spread data-parallel, with `cfg_parallel` over pairs of ranks; a diffusers
    pipeline spreads only with `context_parallel` ("ulysses" or "ring"), which needs a launcher
    with 2 or more ranks (and, for ring, a GPU).
    """
    world = world_size()
    if cfg_parallel and world % 2:
        raise ValueError(
            f"--cfg-parallel puts the two guidance branches on two ranks: it needs an even number of "
            f"ranks (torchrun --nproc_per_node 2, 4, ...), got {world}"
        )
    if context_parallel is None:
        if (launched() or cfg_parallel) and not bundled:
            raise ValueError(
                f"--model {model!r}: under torchrun, generate spreads the bundled models only (data- and "
                "CFG-parallel); spread a diffusers pipeline with --context-parallel ulysses|ring"
            )
        return
    flag = f"--context-parallel {context_parallel}"
    if context_parallel not in CONTEXT_PARALLEL:
        raise ValueError(f"{flag}: unknown kind; expected one of {', '.join(CONTEXT_PARALLEL)}")
    if bundled:
        raise ValueError(
            f"{flag} splits the tokens of a diffusers pipeline's transformer, not the bundled model "
            f"{model!r}: spread that with torchrun alone (data-parallel) or --cfg-parallel"
        )
    if cfg_parallel:
        raise ValueError(
            f"{flag} and --cfg-parallel do not combine: --cfg-parallel is for the bundled models"
        )
    if not launched():
        raise ValueError(
            f"{flag} splits the tokens over the ranks: launch it with torchrun --nproc_per_node 2 (or "
            f"more); this process is a world of {world}"
        )
    if context_parallel == "ring" and not torch.cuda.is_available():
        raise ValueError(
            f"{flag} needs an attention that returns its log-sum-exp (cuDNN, flash, sage: GPU only); "
            "diffusers' CPU attention does not. On CPU use --context-parallel ulysses"
        )


def check_plan(model: str | Path) -> None:
    """ValueError when the diffusers pipeline `model` has no transformer, or one for which
    diffusers has no context-parallel plan, read from its model_index.json before loading
    anything. A pipeline whose index cannot be read here is left for loading to report."""
    from diffusers import DiffusionPipeline

    try:
        index = DiffusionPipeline.load_config(str(model))
    except OSError:
        return
    library, name = index.get("transformer") or (None, None)
    if name is None:
        raise ValueError(f"--model {str(model)!r}: a {index.get('_class_name')} has no transformer to split")
    try:
        transformer_class = getattr(importlib.import_module(library), name)
    except (ImportError, AttributeError, TypeError):
        return
    if getattr(transformer_class, "_cp_plan", None) is None:
        raise ValueError(
            f"--model {str(model)!r}: diffusers has no context-parallel plan (_cp_plan) for its "
            f"transformer, {name}; run it without --context-parallel (docs/DISTRIBUTED.md lists the "
            "transformers that have one)"
        )
