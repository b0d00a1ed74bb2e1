"""The command line: `taylorseer generate`, `taylorseer bench`, `taylorseer calibrate`."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

from taylorseer.cli import calibration
from taylorseer.config import SCHEDULES, TaylorSeerConfig


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that prints (usage, errors, help) on rank 0 only under torchrun: every
    rank still exits, with status 2 on a bad argument."""

    def _print_message(self, message: str, file: IO[str] | None = None) -> None:
        from taylorseer.cli.checks import rank_zero

        if rank_zero():
            super()._print_message(message, file)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default, except where there is none (None, or a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _version() -> str:
    try:
        return version("taylorseer")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown (not installed)"


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
    parser = _Parser(prog="taylorseer", description="Faster diffusion transformers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser(
        "generate",
        help="sample with full compute and with TaylorSeer from the same seeds; write both side by side",
        description="Sample the same seeds with full compute and with TaylorSeer; write one figure with "
        "both and their amplified difference, and print the latencies (median of timed runs after a "
        "warm-up), the speedups, the FLOPs ratio and the PSNR. Runs offline on the bundled model by "
        "default.",
        formatter_class=_HelpFormatter,
    )
    generate.add_argument(
        "--model", default="dit-digits", help=f"a bundled model ({', '.join(_bundled())}), or a diffusers "
        "pipeline: a local folder, or a hub id (org/name) whose weights are available",
    )  # fmt: skip
    generate.add_argument("--steps", type=_positive, default=50, help="sampling steps")
    defaults = TaylorSeerConfig()
    generate.add_argument(
        "--interval", type=_positive, help=f"a full step every N steps (default: {defaults.interval})"
    )
    generate.add_argument(
        "--order", type=int, help=f"expansion order, 0 = reuse the last full step (default: {defaults.order})"
    )
    generate.add_argument("--seed", type=int, default=0, help="seed of the first sample")
    generate.add_argument(
        "--classes", type=_classes, help="bundled models: the digits to draw, e.g. 0,3,7 (default: 0-9)"
    )
    generate.add_argument(
        "--prompt", help=f"diffusers pipelines: the prompt (default: {_pipeline_prompt()!r})"
    )
    generate.add_argument(
        "--output", type=Path, default=Path("taylorseer.png"), help="the figure to write; its extension "
        "gives the format (.png, .jpg, .pdf, .svg, ...); a video pipeline also writes a .mp4 next to it",
    )  # fmt: skip
    generate.add_argument("--repeats", type=_positive, default=3, help="timed runs per way of sampling")
    generate.add_argument("--no-cache", action="store_true", help="full compute only")
    generate.add_argument("--config", type=Path, help="a TaylorSeerConfig JSON (e.g. from calibrate)")
    generate.add_argument(
        "--schedule", choices=SCHEDULES, default=defaults.schedule,
        help="where the full steps go (docs/SCHEDULES.md); calibrated: the bundled model's calibrated "
        "schedule; adaptive: a probe block decides (at most --interval - 1 forecasts in a row; try "
        "--order 1)",
    )  # fmt: skip
    generate.add_argument("--height", type=_positive, help="diffusers pipelines: image/video height")
    generate.add_argument("--width", type=_positive, help="diffusers pipelines: image/video width")
    generate.add_argument("--frames", type=_positive, help="video pipelines: frames")
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
        formatter_class=_HelpFormatter,
    )
    bench.add_argument(
        "--models", type=_models, default=",".join(BENCH_MODELS), help="comma-separated, some of these"
    )
    bench.add_argument(
        "--samples", type=_positive, default=100, help="images per bundled model (the FID-proxy needs "
        f"{_fid_samples()} or more; with fewer it is left out)",
    )  # fmt: skip
    bench.add_argument("--repeats", type=_positive, default=3, help="timed runs per method (median)")
    bench.add_argument("--seed", type=int, default=1000, help="seed of the first sample")
    bench.add_argument(
        "--out", type=Path, help="a new (or empty) folder for the results (default: bench-<date>-<time> "
        "in the current folder)",
    )  # fmt: skip
    bench.add_argument("--no-peers", action="store_true", help="skip the peer libraries")
    bench.add_argument(
        "--scorer", type=_model_folder, help="a local CLIP model folder (save_pretrained): adds a CLIP "
        'score column of each bundled-model image against "a handwritten digit <label>"',
    )  # fmt: skip
    bench.add_argument("--sweep", action="store_true", help="intervals 3-8 x orders 0-4 on dit-digits")

    calibration.add_command(commands)
    return parser


BENCH_MODELS = ("dit-digits", "flux-digits", "dit-heldout", "flux-heldout", "flux-large")


def _models(text: str) -> list[str]:
    models = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [m for m in models if m not in BENCH_MODELS]
    if not models or unknown:
        raise argparse.ArgumentTypeError(f"--models takes some of {', '.join(BENCH_MODELS)}; got {text!r}")
    return models


def _bundled() -> list[str]:
    from taylorseer.models.bundled import BUNDLED_MODELS

    return list(BUNDLED_MODELS)


def _pipeline_prompt() -> str:
    from taylorseer.cli.generate import PIPELINE_PROMPT

    return PIPELINE_PROMPT


def _fid_samples() -> int:
    from taylorseer.bench.subjects import FID_MIN_SAMPLES

    return FID_MIN_SAMPLES


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
                repeats=args.repeats, **call_kwargs,
            )  # fmt: skip
    classes = list(range(10)) if args.classes is None else args.classes
    if bundled and (distributed.launched() or args.cfg_parallel):
        with distributed.process_group():
            return distributed.generate_data_parallel(
                args.model, config, args.steps, classes, args.seed, args.cfg_parallel, repeats=args.repeats
            )
    if bundled:
        return generate.run_bundled(args.model, config, args.steps, classes, args.seed, args.repeats)
    return generate.run_pipeline(
        args.model, config, args.steps, args.prompt, args.seed, video, repeats=args.repeats, **call_kwargs
    )


def _describe(config: TaylorSeerConfig) -> str:
    """The applied config in a few words (its sampler resolved by apply_taylorseer)."""
    sampler = f", {config.sampler} sampler" if config.sampler else ""
    if config.schedule == "calibrated":
        return f"calibrated schedule, {len(config.full_steps)} full steps, order {config.order}"
    return f"{config.schedule} schedule, interval {config.interval}, order {config.order}{sampler}"


def _generate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from taylorseer.cli import checks, figure

    try:
        bundled = checks.check_generate(args)
        config = checks.generate_config(args)
    except ValueError as error:
        parser.error(str(error))
    outcome = _sample(args, config, bundled)
    if outcome is None:
        return 0  # not rank 0: rank 0 writes the output
    full, cached, columns = outcome
    panels = [("full compute", full.images)]
    title = f"{args.model}, {args.steps} steps, seed {args.seed}"
    if cached is not None:
        panels.append(("TaylorSeer", cached.images))
        title += f"; TaylorSeer: {_describe(cached.config)}"
    title += "\n" + figure.headline(full, cached, args.repeats)
    figure.save_side_by_side(args.output, panels, columns, title)
    print(figure.summary(full, cached, args.steps, args.repeats))
    print(f"wrote {args.output}")
    if not bundled and args.output.with_suffix(".mp4").is_file():
        print(f"wrote {args.output.with_suffix('.mp4')} (the videos side by side)")
    return 0


def _bench(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> int:
    import time

    from taylorseer.cli.checks import check_installed, check_out_folder

    if args.out is None:
        args.out = Path(time.strftime("bench-%Y%m%d-%H%M%S"))
    try:
        needed = ("matplotlib", "safetensors", "diffusers", "sklearn", "scipy", "skimage")
        check_installed(*needed, extra="bench", purpose="taylorseer bench")
        if not (args.no_peers or args.sweep):
            check_installed("cache_dit", extra="bench", purpose="taylorseer bench (its peers; or --no-peers)")
        check_out_folder(args.out)
        if args.sweep and args.samples < _fid_samples():
            raise ValueError(
                f"--sweep tabulates the FID-proxy, which fits a covariance to the samples: it needs "
                f"--samples {_fid_samples()} or more, got {args.samples}"
            )
    except ValueError as error:
        parser.error(str(error))
    from taylorseer.bench import runner

    args.argv = argv
    return runner.sweep(args) if args.sweep else runner.main(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.command == "calibrate":
        return calibration.run(args, parser)
    if args.command == "bench":
        return _bench(args, parser, argv[1:])
    return _generate(args, parser)


if __name__ == "__main__":
    sys.exit(main())
