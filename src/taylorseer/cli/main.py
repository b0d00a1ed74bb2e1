"""The command line: `taylorseer generate`, `taylorseer bench`, `taylorseer calibrate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from taylorseer.config import TaylorSeerConfig


def _classes(text: str) -> list[int]:
    try:
        classes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--classes takes digits separated by commas, got {text!r}"
        ) from None
    if not classes or any(not 0 <= c <= 9 for c in classes):
        raise argparse.ArgumentTypeError(f"--classes takes digits 0-9 separated by commas, got {text!r}")
    return classes


def _model_folder(text: str) -> Path:
    if not (Path(text) / "config.json").is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a local model folder (no config.json in it)")
    return Path(text)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taylorseer", description="Faster diffusion transformers.")
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser(
        "generate",
        help="sample with full compute and with TaylorSeer from the same seeds; write both side by side",
        description="Sample the same seeds with full compute and with TaylorSeer; write one PNG with "
        "both grids and print latencies, speedup, FLOPs ratio and PSNR. Runs offline on the "
        "bundled model by default.",
    )
    generate.add_argument(
        "--model", default="dit-digits", help="bundled model (dit-digits, flux-digits), or a diffusers "
        "pipeline folder or hub id whose weights are available locally (default: dit-digits)",
    )  # fmt: skip
    generate.add_argument("--steps", type=_positive, default=50, help="sampling steps (default 50)")
    defaults = TaylorSeerConfig()
    generate.add_argument(
        "--interval", type=_positive, help=f"full step every N (default {defaults.interval})"
    )
    generate.add_argument("--order", type=int, help=f"expansion order, 0 = reuse (default {defaults.order})")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--classes", type=_classes, default=list(range(10)), help="digits, e.g. 0,3,7")
    generate.add_argument("--prompt", default="a photo of a cat", help="prompt, for diffusers pipelines")
    generate.add_argument("--output", type=Path, default=Path("taylorseer.png"), help="PNG to write")
    generate.add_argument("--no-cache", action="store_true", help="full compute only")
    generate.add_argument("--config", type=Path, help="a TaylorSeerConfig JSON (e.g. from calibrate)")
    generate.add_argument(
        "--schedule", choices=("fixed", "calibrated", "adaptive"), default="fixed",
        help="fixed: a full step every --interval; calibrated: the bundled model's calibrated schedule; "
        "adaptive: a probe block decides (at most --interval - 1 forecasts in a row; try --order 1)",
    )  # fmt: skip
    generate.add_argument("--height", type=_positive, help="image/video height, for diffusers pipelines")
    generate.add_argument("--width", type=_positive, help="image/video width, for diffusers pipelines")
    generate.add_argument("--frames", type=_positive, help="video frames, for video pipelines")
    generate.add_argument(
        "--cfg-parallel", action="store_true", help="under torchrun (an even number of ranks): each "
        "pair of ranks runs the two guidance branches, one each (bundled models)",
    )  # fmt: skip
    generate.add_argument(
        "--context-parallel", choices=("ulysses", "ring"), help="under torchrun (2 or more ranks): split "
        "the tokens of a diffusers pipeline's transformer over the ranks (ring needs a GPU)",
    )  # fmt: skip

    bench = commands.add_parser(
        "bench",
        help="every method side by side on one model and one set of seeds",
        description="Full compute, our configurations, plain reuse, fewer steps at equal model "
        "evaluations and the peers (diffusers TaylorSeerCache, cache-dit), on the same seeds: "
        "FLOPs, latency, memory and fidelity. Writes RESULTS.md, bench.json and pareto.png.",
    )
    bench.add_argument("--models", type=_models, default=list(BENCH_MODELS), help="comma-separated")
    bench.add_argument("--samples", type=_positive, default=100, help="images per bundled model")
    bench.add_argument("--repeats", type=_positive, default=3, help="timed runs per method (median)")
    bench.add_argument("--seed", type=int, default=1000)
    bench.add_argument("--out", type=Path, default=Path("docs"), help="output folder")
    bench.add_argument("--no-peers", action="store_true", help="skip the peer libraries")
    bench.add_argument(
        "--scorer", type=_model_folder, help="a local CLIP model folder (save_pretrained): adds a CLIP "
        'score column of each bundled-model image against "a handwritten digit <label>"',
    )  # fmt: skip
    bench.add_argument("--sweep", action="store_true", help="intervals 3-8 x orders 0-4 on dit-digits")

    calibrate = commands.add_parser(
        "calibrate",
        help="search where a budget of full steps should go, on a few samples; write a JSON config",
        description="Search the placement of --budget full steps that brings cached samples closest to "
        "full compute on calibration seeds; report the PSNR on those and on held-out seeds; write the "
        "TaylorSeerConfig as JSON (load it with TaylorSeerConfig.from_json or generate --config).",
    )
    calibrate.add_argument("--model", choices=("dit-digits", "flux-digits"), default="dit-digits")
    calibrate.add_argument("--steps", type=_positive, default=50)
    calibrate.add_argument("--budget", type=_positive, default=12, help="full steps to place")
    calibrate.add_argument("--order", type=int, default=defaults.order)
    calibrate.add_argument("--granularity", default=defaults.granularity)
    calibrate.add_argument("--samples", type=_positive, default=10, help="calibration samples")
    calibrate.add_argument("--seed", type=int, default=0, help="seed of the calibration samples")
    calibrate.add_argument("--held-out-seed", type=int, default=5000, help="seed of the evaluation samples")
    calibrate.add_argument("--output", type=Path, default=Path("schedule.json"))
    return parser


BENCH_MODELS = ("dit-digits", "flux-digits", "flux-large")


def _models(text: str) -> list[str]:
    models = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [m for m in models if m not in BENCH_MODELS]
    if not models or unknown:
        raise argparse.ArgumentTypeError(f"--models takes some of {', '.join(BENCH_MODELS)}; got {text!r}")
    return models


def _sample(args: argparse.Namespace, config: TaylorSeerConfig | None, bundled: bool) -> Any:
    """(full Result, cached Result or None, columns) the way the launch asks for; under torchrun,
    None on every rank but 0."""
    from taylorseer import distributed
    from taylorseer.cli import generate

    sizes = dict(height=args.height, width=args.width, num_frames=args.frames)
    call_kwargs = {name: value for name, value in sizes.items() if value is not None}
    video = args.output.with_suffix(".mp4")
    if args.context_parallel:
        with distributed.process_group():
            return distributed.generate_context_parallel(
                args.model, args.context_parallel, config, args.steps, args.prompt, args.seed, video,
                **call_kwargs,
            )  # fmt: skip
    if bundled and (distributed.launched() or args.cfg_parallel):
        with distributed.process_group():
            return distributed.generate_data_parallel(
                args.model, config, args.steps, args.classes, args.seed, args.cfg_parallel
            )
    if bundled:
        return generate.run_bundled(args.model, config, args.steps, args.classes, args.seed)
    return generate.run_pipeline(args.model, config, args.steps, args.prompt, args.seed, video, **call_kwargs)


def _generate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from taylorseer.calibrate import calibrated_config
    from taylorseer.cli import checks, figure
    from taylorseer.models.bundled import BUNDLED_MODELS

    try:
        if args.no_cache:
            config = None
        elif args.config is not None or args.schedule == "calibrated":
            given = [f"--{name}" for name in ("interval", "order") if getattr(args, name) is not None]
            if given:
                source = "--config" if args.config else "--schedule calibrated"
                raise ValueError(
                    f"{' and '.join(given)} cannot be combined with {source}: the config sets them"
                )
            config = TaylorSeerConfig.from_json(args.config) if args.config else calibrated_config(args.model)
        else:
            defaults = TaylorSeerConfig()
            interval = defaults.interval if args.interval is None else args.interval
            order = defaults.order if args.order is None else args.order
            config = TaylorSeerConfig(interval=interval, order=order, schedule=args.schedule)
        if config is not None and config.num_steps not in (None, args.steps):
            raise ValueError(f"the config is for num_steps={config.num_steps}, got --steps {args.steps}")
        checks.check_writable(args.output)
        bundled = args.model in BUNDLED_MODELS
        checks.check_launch(args.model, bundled, args.cfg_parallel, args.context_parallel)
        if args.context_parallel:
            checks.check_plan(args.model)
    except ValueError as error:
        parser.error(str(error))
    outcome = _sample(args, config, bundled)
    if outcome is None:
        return 0  # not rank 0: rank 0 writes the output
    full, cached, columns = outcome
    panels = [(f"full compute: {full.seconds:.2f} s", full.images)]
    title = f"{args.model}, {args.steps} steps, seed {args.seed}"
    if cached is not None:
        which = f"{config.schedule}, interval {config.interval}, order {config.order}"
        if config.schedule == "calibrated":
            which = f"calibrated, {len(config.full_steps)} full steps, order {config.order}"
        label = f"TaylorSeer ({which}): {cached.seconds:.2f} s, {full.seconds / cached.seconds:.2f}x faster"
        panels.append((label, cached.images))
    figure.save_side_by_side(args.output, panels, columns, title)
    print(figure.summary(full, cached, args.steps))
    print(f"wrote {args.output}")
    if not bundled and args.output.with_suffix(".mp4").is_file():
        print(f"wrote {args.output.with_suffix('.mp4')} (the videos side by side)")
    return 0


def _calibrate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from taylorseer.cli.calibration import calibrate_bundled
    from taylorseer.cli.checks import check_writable

    try:
        base = TaylorSeerConfig(order=args.order, granularity=args.granularity)
        if args.budget <= base.effective_warmup or args.budget > args.steps:
            raise ValueError(
                f"--budget {args.budget} must exceed the warm-up ({base.effective_warmup}) "
                f"and be at most --steps {args.steps}"
            )
        check_writable(args.output)
    except ValueError as error:
        parser.error(str(error))
    config, lines = calibrate_bundled(
        args.model, base, args.steps, args.budget, args.samples, args.seed, args.held_out_seed
    )
    config.to_json(args.output)
    print("\n".join(lines))
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        return _calibrate(args, parser)
    if args.command == "bench":
        from taylorseer.bench import runner

        args.argv = argv[1:]
        return runner.sweep(args) if args.sweep else runner.main(args)
    return _generate(args, parser)


if __name__ == "__main__":
    sys.exit(main())
