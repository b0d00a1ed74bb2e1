"""Checks of the command line's options, made before any compute, and the cache config they ask
for: each raises ValueError naming the bad value."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import re
from pathlib import Path

import torch

from taylorseer.config import TaylorSeerConfig
from taylorseer.distributed.group import CONTEXT_PARALLEL, launched, world_size

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # "org/name": a model on the Hugging Face hub
PIPELINE_ONLY = ("prompt", "height", "width", "frames")  # generate's options for diffusers pipelines
BUNDLED_ONLY = ("classes",)  # and for the bundled models
NATIVE_MODELS = ("dit-digits",)  # the bundled models that need no diffusers (the native DiT)


def rank_zero() -> bool:
    """Whether this process is rank 0 of a torchrun launch (torchrun sets RANK), or runs alone."""
    return os.environ.get("RANK", "0") == "0"


def check_writable(path: Path) -> None:
    """Fail before any compute when `path` cannot be written."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"--output {str(path)!r} is a directory; give a .png file path")
    if not folder.is_dir():
        raise ValueError(f"--output {str(path)!r}: the folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--output {str(path)!r}: the folder {str(folder)!r} is not writable")


def image_formats() -> list[str]:
    """The file extensions the figure can be written as (matplotlib's, without the dot)."""
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_output(path: Path) -> None:
    """`check_writable`, and an extension the figure can be written as (its format follows it)."""
    check_writable(path)
    formats = image_formats()
    if path.suffix.lstrip(".").lower() not in formats:
        problem = (
            f"the figure cannot be written as {path.suffix!r}"
            if path.suffix
            else "no extension, and the extension gives the format"
        )
        raise ValueError(
            f"--output {str(path)!r}: {problem}; use one of {', '.join('.' + f for f in formats)}"
        )


# import name -> pip's name
DISTRIBUTIONS = {"sklearn": "scikit-learn", "skimage": "scikit-image", "cache_dit": "cache-dit"}


def check_installed(*packages: str, extra: str, purpose: str) -> None:
    """ValueError naming the missing `packages` (import names), as pip names them, and the extra
    that installs them."""
    missing = [DISTRIBUTIONS.get(name, name) for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(
            f"{purpose} needs {', '.join(missing)}: pip install 'taylorseer[{extra}]' (or the packages)"
        )


def check_model(model: str, bundled: tuple[str, ...]) -> bool:
    """Whether `model` is a bundled model (True) or a diffusers pipeline (False): a local folder
    with a model_index.json, or a hub id "org/name" (loaded from the local hub cache or the hub).
    Anything else is a ValueError naming the bundled models, before anything is loaded."""
    if model in bundled:
        return True
    path = Path(model)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ValueError(
                f"--model {model!r}: the folder has no model_index.json, so it is not a diffusers "
                "pipeline folder (save one with pipe.save_pretrained(folder))"
            )
        return False
    if path.exists():
        raise ValueError(f"--model {model!r} is a file; give a diffusers pipeline folder")
    if HUB_ID.fullmatch(model):
        return False
    raise ValueError(
        f"--model {model!r}: not a bundled model ({', '.join(bundled)}) and no such folder exists; "
        "for a diffusers pipeline give its folder or its hub id (org/name)"
    )


def check_options(model: str, bundled: bool, given: list[str]) -> None:
    """ValueError for options `given` (by name, e.g. "prompt") that do not apply to `model`."""
    misplaced = [name for name in given if name in (PIPELINE_ONLY if bundled else BUNDLED_ONLY)]
    if not misplaced:
        return
    flags = " and ".join(f"--{name}" for name in misplaced)
    if bundled:
        raise ValueError(
            f"{flags} apply to diffusers pipelines only; the bundled model {model!r} samples 16x16 "
            "digits of the --classes given"
        )
    raise ValueError(f"{flags} applies to the bundled models only; a diffusers pipeline takes --prompt")


def check_out_folder(out: Path) -> None:
    """Fail before any compute when the folder `out` for `bench`'s results is not a fresh one that
    can be written: it must be missing (then its parent must be writable) or empty and writable."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(
            f"--out {str(out)!r} already holds files; give a new or empty folder, so that no earlier "
            "results are overwritten"
        )
    existing = out if out.is_dir() else next((p for p in out.absolute().parents if p.exists()), Path("/"))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise ValueError(f"--out {str(out)!r}: {str(existing)!r} is not writable")


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


def generate_config(args: argparse.Namespace) -> TaylorSeerConfig | None:
    """The cache's config the options ask for; ValueError naming options that contradict it."""
    from taylorseer.calibrate import calibrated_config

    if args.no_cache:
        return None
    if args.config is not None or args.schedule == "calibrated":
        given = [f"--{name}" for name in ("interval", "order") if getattr(args, name) is not None]
        if given:
            source = "--config" if args.config else "--schedule calibrated"
            raise ValueError(f"{' and '.join(given)} cannot be combined with {source}: the config sets them")
        config = TaylorSeerConfig.from_json(args.config) if args.config else calibrated_config(args.model)
    else:
        defaults = TaylorSeerConfig()
        interval = defaults.interval if args.interval is None else args.interval
        order = defaults.order if args.order is None else args.order
        config = TaylorSeerConfig(interval=interval, order=order, schedule=args.schedule)
    if config.num_steps not in (None, args.steps):
        raise ValueError(f"the config is for num_steps={config.num_steps}, got --steps {args.steps}")
    return config


def check_generate(args: argparse.Namespace) -> bool:
    """Every check of `generate`'s options that can be made before loading anything; returns
    whether the model is a bundled one. ValueError naming the bad value otherwise. Diffusers is
    needed by every model but the native DiT."""
    from taylorseer.models.bundled import BUNDLED_MODELS

    check_installed("matplotlib", "tqdm", "safetensors", extra="cli", purpose="taylorseer generate")
    bundled = check_model(args.model, tuple(BUNDLED_MODELS))
    options = ("prompt", "height", "width", "frames", "classes")
    given = [name for name in options if getattr(args, name) is not None]
    check_options(args.model, bundled, given)
    if args.model not in NATIVE_MODELS:
        check_installed("diffusers", extra="diffusers", purpose=f"--model {args.model}")
    check_output(args.output)
    check_launch(args.model, bundled, args.cfg_parallel, args.context_parallel)
    if args.context_parallel:
        check_plan(args.model)
    return bundled
