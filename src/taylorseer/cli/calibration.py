"""`taylorseer calibrate`: place a budget of full steps for a bundled model or a diffusers pipeline,
report it on held-out seeds, and write the config (with what it was calibrated for) as JSON."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from taylorseer.api import maybe_applied
from taylorseer.api.pipelines import describe
from taylorseer.calibrate import Sampler, calibrate, search, with_full_steps
from taylorseer.config import TaylorSeerConfig


def add_command(commands: Any) -> None:
    """The `calibrate` subcommand and its options."""
    defaults = TaylorSeerConfig()
    command = commands.add_parser(
        "calibrate",
        help="place a budget of full steps where they cost least, on a few samples; write a JSON config",
        description="Find the placement of --budget full steps that brings cached samples closest to full "
        "compute on calibration seeds (about a dozen sampling runs; --search: the exhaustive search, one "
        "or two hundred), report the PSNR on those and on held-out seeds, and write the TaylorSeerConfig as "
        "JSON (TaylorSeerConfig.from_json, or taylorseer generate --config).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    command.add_argument(
        "--model", default="dit-digits", help="a bundled model, or a diffusers pipeline folder"
    )
    command.add_argument("--prompt", action="append", help="pipelines: a prompt (repeat for more)")
    for size in ("height", "width", "frames"):
        command.add_argument(f"--{size}", type=int, help=f"pipelines: the {size} to sample at")
    command.add_argument("--steps", type=int, default=50, help="sampling steps")
    command.add_argument(
        "--budget", type=int, help="full steps to place (default: as many as the default config runs)"
    )
    command.add_argument("--order", type=int, default=defaults.order)
    command.add_argument("--granularity", default=defaults.granularity)
    command.add_argument(
        "--samples", type=int, default=12, help="calibration samples (seeds per prompt; fewer are noisy)"
    )
    command.add_argument("--seed", type=int, default=0, help="first seed of the calibration samples")
    command.add_argument("--held-out-seed", type=int, default=5000, help="first seed of the held-out samples")
    command.add_argument("--max-calls", type=int, default=12, help="sampling runs the calibration may make")
    command.add_argument("--search", action="store_true", help="the exhaustive closed-loop search instead")
    command.add_argument("--output", type=Path, default=Path("schedule.json"))


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from taylorseer.cli.checks import check_writable
    from taylorseer.models.bundled import BUNDLED_MODELS

    bundled = args.model in BUNDLED_MODELS
    try:
        base = TaylorSeerConfig(order=args.order, granularity=args.granularity)
        if args.steps < 2:
            raise ValueError(f"--steps must be at least 2, got {args.steps}")
        budget = args.budget or base.full_step_budget(args.steps)
        if not 1 < budget <= args.steps:
            raise ValueError(f"--budget {budget} must be more than 1 and at most --steps {args.steps}")
        if args.samples < 1 or args.max_calls < 3:
            raise ValueError(
                f"--samples must be >= 1 and --max-calls >= 3, got {args.samples}, {args.max_calls}"
            )
        if not args.search and args.samples * len(args.prompt or [None]) < 2:
            raise ValueError(
                "calibration needs at least 2 samples per run (--samples per --prompt) to tell a "
                "consistent gain from chance, got 1; or use --search"
            )
        given = [f"--{name}" for name in ("prompt", "height", "width", "frames") if getattr(args, name)]
        if bundled and given:
            raise ValueError(f"{', '.join(given)}: for diffusers pipelines, not the bundled {args.model!r}")
        if not bundled and not (Path(args.model) / "model_index.json").is_file():
            raise ValueError(
                f"--model {args.model!r}: no such bundled model ({', '.join(sorted(BUNDLED_MODELS))}) and no "
                "diffusers pipeline folder (model_index.json) there"
            )
        check_writable(args.output)
    except ValueError as error:
        parser.error(str(error))
    target, samplers = _bundled(args) if bundled else _pipeline(args)
    config, lines = _calibrate(args, base, budget, samplers)
    made_for = dict(describe(target), model=args.model, num_steps=args.steps)
    dataclasses.replace(config, calibrated_for=made_for).to_json(args.output)
    print("\n".join(lines))
    print(f"wrote {args.output}")
    return 0


def _calibrate(
    args: argparse.Namespace, base: TaylorSeerConfig, budget: int, samplers: Callable[[int], Sampler]
) -> tuple[TaylorSeerConfig, list[str]]:
    from tqdm.auto import tqdm

    from taylorseer.bench.metrics import psnr

    total = None if args.search else args.max_calls
    with tqdm(total=total, desc="calibration: sampling runs", unit="run") as bar:
        sampler = samplers(args.seed)

        def counted(config: TaylorSeerConfig | None) -> Tensor:
            output = sampler(config)
            bar.update(1)
            return output

        if args.search:
            config, report = search(counted, base, args.steps, budget)
        else:
            config, report = calibrate(counted, base, args.steps, budget, max_calls=args.max_calls)
    # `config` carries the sampler calibration detected, and with it the default placement
    default = with_full_steps(config, config.spread_placement(args.steps, budget), args.steps)
    lines = [
        f"{args.model}: {budget} of {args.steps} steps full; default full steps {list(default.full_steps)}, "
        f"calibrated {list(config.full_steps)}",
        f"  {report['sampler_calls']} sampling runs, {report['seconds']:.1f} s",
    ]
    for label, seed in (("calibration seeds", args.seed), ("held-out seeds", args.held_out_seed)):
        run = samplers(seed)
        reference = run(None)
        lines.append(
            f"  {label}: PSNR default placement {psnr(run(default), reference):.2f} dB -> calibrated "
            f"{psnr(run(config), reference):.2f} dB"
        )
    return config, lines


def _bundled(args: argparse.Namespace) -> tuple[Any, Callable[[int], Sampler]]:
    from taylorseer.models.bundled import load_bundled

    generator = load_bundled(args.model)
    labels = torch.arange(args.samples) % 10

    def samplers(seed: int) -> Sampler:
        noise = generator.noise(args.samples, seed)

        def sample(config: TaylorSeerConfig | None) -> Tensor:
            with maybe_applied(generator.transformer, config, args.steps):
                return generator.sample(noise, labels, steps=args.steps)

        return sample

    return generator.transformer, samplers


def _pipeline(args: argparse.Namespace) -> tuple[Any, Callable[[int], Sampler]]:
    from diffusers import DiffusionPipeline

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    pipe = DiffusionPipeline.from_pretrained(args.model, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    prompts = args.prompt or ["a photo of a cat"]
    sizes = dict(height=args.height, width=args.width, num_frames=args.frames)
    call_kwargs = {name: value for name, value in sizes.items() if value is not None}

    def samplers(seed: int) -> Sampler:
        def sample(config: TaylorSeerConfig | None) -> Tensor:
            outputs = []
            with maybe_applied(pipe, config):  # the pipeline's scheduler gives the run length
                for prompt in prompts:
                    for k in range(args.samples):
                        generator = torch.Generator(device).manual_seed(seed + k)
                        result = pipe(prompt=prompt, num_inference_steps=args.steps, generator=generator,
                                      output_type="latent", **call_kwargs)  # fmt: skip
                        latents = result.images if hasattr(result, "images") else result.frames
                        outputs.append(latents.float().cpu())
            return torch.cat(outputs)

        return sample

    return pipe, samplers
