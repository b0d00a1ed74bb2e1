"""`apply_taylorseer(pipe, fixed())`: the pipeline's scheduler is the step clock of every denoiser.

`set_timesteps` starts a run, each `step()` ends a step, and the model calls in between are that
step's guidance branches; timestep values are never read. These tests run whole tiny pipelines
through the situations a timestep-value clock gets wrong: interrupted runs, img2img after an
unfinished txt2img, timesteps that repeat inside a run (bf16 rounding, Karras sigmas, Heun,
KDPM2) and two experts that share one run (Wan 2.2).
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
from torch import nn

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from taylorseer import TaylorSeerConfig, apply_taylorseer  # noqa: E402
from taylorseer.core.schedule import full_step_indices  # noqa: E402
from taylorseer.runtime.recording import recording  # noqa: E402
from taylorseer.wiring.forwards import is_wrapped  # noqa: E402
from tiny_pipelines import (  # noqa: E402
    TEXT,
    WIDTH,
    Case,
    build_flux,
    build_flux_bf16,
    build_pixart_sigma,
    build_sd3,
    build_wan,
    build_wan22,
    built_once,
)

pytestmark = [pytest.mark.system, pytest.mark.usefixtures("one_thread")]


def fixed(**fields) -> TaylorSeerConfig:
    """The paper's fixed schedule at order 2: its full steps are easy to count, run by run."""
    return TaylorSeerConfig(schedule="fixed", order=2, **fields)


WARMUP = fixed().effective_warmup  # 3: order 2 + 1
KARRAS = dict(use_karras_sigmas=True, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)

BUILDERS: dict[str, Callable[..., Case]] = {
    "flux": build_flux,
    "wan": build_wan,
    "wan22": build_wan22,
    "flux_bf16": build_flux_bf16,
    # DPM-Solver++ on Karras sigmas (SD's betas): at 50 steps two of the last timesteps are both 1
    "pixart": lambda _: build_pixart_sigma(diffusers.DPMSolverMultistepScheduler(**KARRAS)),
    "pixart_kdpm2": lambda _: build_pixart_sigma(diffusers.KDPM2DiscreteScheduler()),
    "sd3_heun": lambda _: build_sd3(diffusers.FlowMatchHeunDiscreteScheduler()),
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Callable[[str], Case]:
    return built_once(BUILDERS, tmp_path_factory)


def denoisers(pipe) -> list[nn.Module]:
    return [pipe.transformer] + ([pipe.transformer_2] if getattr(pipe, "transformer_2", None) else [])


def repeats(values) -> int:
    """How many of `values` equal an earlier one."""
    values = [float(v) for v in values]
    return len(values) - len(set(values))


def count_calls(module: nn.Module, counter: list[int]):
    """Count `module`'s calls in `counter[0]`; returns the hook's handle."""
    return module.register_forward_pre_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))


def at_step(step: int, action: Callable[[object], None]):
    """A `callback_on_step_end` that does `action(pipe)` after step `step`."""

    def callback(pipe, index, timestep, tensors):
        if index == step:
            action(pipe)
        return tensors

    return callback


def record(done: list[int]):
    """A `callback_on_step_end` that appends each completed step to `done`."""

    def callback(pipe, index, timestep, tensors):
        done.append(index)
        return tensors

    return callback


def interrupt(pipe) -> None:
    pipe._interrupt = True


def fail(pipe) -> None:
    raise RuntimeError("callback failed")


OTHER_PROMPT = {
    "flux": lambda: dict(
        prompt_embeds=torch.randn(1, TEXT, WIDTH, generator=torch.Generator().manual_seed(7))
    ),
    "wan": lambda: dict(prompt="a photo of a dog"),
}


# 1. A run cut short, then a normal run: the new run starts at its set_timesteps, not as another
# guidance branch of the old step 0 (whose timestep it repeats).
@pytest.mark.parametrize("first", ["interrupt", "raise", "one_step"])
@pytest.mark.parametrize("name", ["flux", "wan"])
def test_a_run_after_an_interrupted_one_is_a_fresh_run(cases, name, first):
    case = cases(name)
    config = fixed()
    other = OTHER_PROMPT[name]()  # the cut-short run's features must not leak into the next run
    with apply_taylorseer(case.pipe, config) as handle:
        if first == "interrupt":
            case(8, callback_on_step_end=at_step(0, interrupt), **other)
        elif first == "raise":
            with pytest.raises(RuntimeError, match="callback failed"):
                case(8, callback_on_step_end=at_step(0, fail), **other)
        else:
            case(1, **other)
        assert handle.stats["steps"] == 1  # the first run called the model at step 0 only
        output = case(8)
        stats = handle.stats
    assert stats["steps"] == 8
    assert stats["full_steps"] == len(full_step_indices(8, config.interval, WARMUP))
    assert stats["full_calls"] == case.calls_per_step * stats["full_steps"]  # no extra "branch"
    assert stats["forecast_calls"] == case.calls_per_step * stats["forecast_steps"] > 0
    with apply_taylorseer(case.pipe, config):
        assert torch.equal(case(8), output)  # what a fresh cache gives


# 2. img2img after a cancelled txt2img, on the same transformer and scheduler.
def test_img2img_after_a_cancelled_txt2img(cases):
    case = cases("flux")
    image = case(8)  # uncached: the init image
    img2img = diffusers.FluxImg2ImgPipeline.from_pipe(case.pipe)
    img2img.set_progress_bar_config(disable=True)
    assert img2img.scheduler is case.pipe.scheduler and img2img.transformer is case.pipe.transformer
    steps = int(20 * 0.3)  # the img2img run's own steps

    @torch.no_grad()
    def refine():
        generator = torch.Generator().manual_seed(0)
        inputs = dict(case.inputs(), image=image, strength=0.3, num_inference_steps=20, generator=generator)
        return img2img(**inputs).images

    with apply_taylorseer(case.pipe, fixed()) as handle:  # applied to the txt2img pipeline
        case(20, callback_on_step_end=at_step(10, interrupt))
        assert handle.stats["steps"] == 11
        refined = refine()
        stats = handle.stats
    assert stats["steps"] == steps and stats["forecast_steps"] > 0
    assert stats["full_steps"] == len(full_step_indices(steps, 5, WARMUP))
    with apply_taylorseer(img2img, fixed()):  # fresh, on the img2img pipeline itself
        assert torch.equal(refine(), refined)
    with apply_taylorseer(img2img, fixed(final_full=1)) as handle:
        last_full = refine()  # the run's length comes from the scheduler: no num_steps given
        assert handle.stats["steps"] == steps
        assert handle.stats["full_steps"] == stats["full_steps"] + 1
    assert not torch.equal(last_full, refined)


# 3. Timestep values that repeat inside one run are steps, not guidance branches.
def test_flux_bf16_colliding_timesteps_are_steps(cases):
    case = cases("flux_bf16")
    plain = case(50)
    seen = case.pipe.scheduler.timesteps.to(torch.bfloat16) / 1000  # what the transformer gets
    assert repeats(seen) > 0  # precondition: bf16 rounding merges neighbouring timesteps
    outputs = {}
    for final in (0, 3):
        with apply_taylorseer(case.pipe, fixed(final_full=final)) as handle:
            outputs[final] = case(50)
            stats = handle.stats
        assert stats["steps"] == 50 and stats["forecast_steps"] > 0
        assert stats["full_steps"] == len(full_step_indices(50, 5, WARMUP, final))
        assert stats["full_calls"] + stats["forecast_calls"] == 50
        assert torch.isfinite(outputs[final]).all()
    assert not torch.equal(outputs[3], outputs[0])
    assert not torch.equal(outputs[3], plain)


def test_karras_dpm_solver_repeated_timesteps_are_steps(cases):
    case = cases("pixart")
    case.pipe.scheduler.set_timesteps(50)
    assert repeats(case.pipe.scheduler.timesteps) > 0  # precondition: e.g. ..., 2, 1, 1, 0
    with apply_taylorseer(case.pipe, fixed()) as handle:
        output = case(50)
        stats = handle.stats
    full = len(full_step_indices(50, 5, WARMUP))
    assert stats["steps"] == 50
    assert (stats["full_steps"], stats["forecast_steps"]) == (full, 50 - full)
    assert (stats["full_calls"], stats["forecast_calls"]) == (full, 50 - full)  # one batched call a step
    assert torch.isfinite(output).all()


def test_flowmatch_heun_counts_every_model_evaluation(cases):
    case = cases("sd3_heun")
    with apply_taylorseer(case.pipe, fixed()) as handle:
        output = case(10)
        stats = handle.stats
    timesteps = case.pipe.scheduler.timesteps
    assert len(timesteps) == 19 and repeats(timesteps) == 9  # Heun: two evaluations per step but one
    assert stats["steps"] == len(timesteps)  # every step() ends a step
    assert stats["full_steps"] == len(full_step_indices(19, 5, WARMUP))
    assert stats["full_calls"] + stats["forecast_calls"] == stats["steps"] * case.calls_per_step
    assert stats["forecast_calls"] == stats["forecast_steps"] * case.calls_per_step > 0
    assert torch.isfinite(output).all()


# 4. KDPM2 interleaves its timesteps: the run counts model evaluations, and a config made for
# the number of inference steps is refused at the run's first call.
def test_kdpm2_counts_evaluations_and_refuses_a_wrong_num_steps(cases):
    case = cases("pixart_kdpm2")
    with apply_taylorseer(case.pipe, fixed()) as handle:
        output = case(10)
        stats = handle.stats
    evaluations = len(case.pipe.scheduler.timesteps)
    assert evaluations == 19  # 1 + 2 * 9, interleaved
    assert stats["steps"] == evaluations
    assert stats["full_steps"] == len(full_step_indices(evaluations, 5, WARMUP))
    assert stats["forecast_steps"] == evaluations - stats["full_steps"]
    assert torch.isfinite(output).all()

    done: list[int] = []  # steps that completed
    calls = [0]
    hook = count_calls(case.pipe.transformer, calls)
    try:
        with (
            apply_taylorseer(case.pipe, fixed(num_steps=10)),
            pytest.raises(ValueError, match="but this run has 19"),
        ):
            case(10, callback_on_step_end=record(done))
    finally:
        hook.remove()
    assert calls == [1] and done == []  # refused at the first call: no step completed


# 5. Wan 2.2: two experts on one clock; the schedule counts the pipeline's steps.
def test_wan22_two_experts_share_the_pipeline_schedule(cases):
    case = cases("wan22")
    pipe = case.pipe
    experts = denoisers(pipe)
    assert len(experts) == 2
    calls = {"transformer": [0], "transformer_2": [0]}  # every call
    full = {"transformer": [0], "transformer_2": [0]}  # full calls: the forward body ran
    hooks = [count_calls(getattr(pipe, name), counter) for name, counter in calls.items()]
    hooks += [count_calls(getattr(pipe, name).proj_out, counter) for name, counter in full.items()]
    try:
        case(10)
        assert calls == {"transformer": [10], "transformer_2": [10]}  # precondition: 5 steps each, CFG
        outputs, stats = {}, {}
        for final in (0, 2):
            for counter in (*calls.values(), *full.values()):
                counter[0] = 0
            with apply_taylorseer(pipe, fixed(interval=3, final_full=final)) as handle:
                outputs[final] = case(10)
                stats[final] = handle.stats
            assert stats[final]["steps"] == 10
            assert stats[final]["cached_modules"] == 2  # one per expert at model granularity
            # the second expert enters at step 5, a full step: the counts are the fixed schedule's
            assert stats[final]["full_steps"] == len(full_step_indices(10, 3, WARMUP, final))
            assert sum(counter[0] for counter in full.values()) == stats[final]["full_calls"]
            for name in calls:  # each expert forecast some of its calls
                assert 0 < full[name][0] < calls[name][0] == 10, name
    finally:
        for hook in hooks:
            hook.remove()
    assert stats[2]["full_steps"] == stats[0]["full_steps"] + 1  # step 9, on the second expert
    assert full["transformer_2"][0] == 2 * 3  # steps 5, 8 and the final 9, two branches each
    assert not torch.equal(outputs[2], outputs[0])


# 6. interval=1 never forecasts: bit-identical to no cache; remove() gives back the pipeline.
@pytest.mark.parametrize("name", ["flux", "pixart", "sd3_heun", "wan22"])
def test_interval_one_is_exact_and_remove_restores_the_pipeline(cases, name):
    case = cases(name)
    pipe = case.pipe
    reference = case(6)
    owned = [pipe.scheduler, *(m for denoiser in denoisers(pipe) for m in denoiser.modules())]
    before = [set(vars(each)) for each in owned]  # instance attributes
    handle = apply_taylorseer(pipe, fixed(interval=1))
    assert is_wrapped(pipe.scheduler, "step") and is_wrapped(pipe.scheduler, "set_timesteps")
    assert all(is_wrapped(denoiser) for denoiser in denoisers(pipe))
    try:
        assert torch.equal(case(6), reference)
        assert handle.stats["forecast_calls"] == 0 and handle.stats["full_calls"] > 0
    finally:
        handle.remove()
    assert "step" not in vars(pipe.scheduler) and "set_timesteps" not in vars(pipe.scheduler)
    assert not any(is_wrapped(module) for module in owned[1:])
    assert [set(vars(each)) for each in owned] == before
    assert torch.equal(case(6), reference)


# 7. What apply_taylorseer refuses, and that a refusal leaves everything as it was.
def test_a_compiled_transformer_is_refused(cases):
    pipe = cases("flux").pipe
    compiled = torch.compile(pipe.transformer)
    with pytest.raises(ValueError, match="apply TaylorSeer first, then compile"):
        apply_taylorseer(compiled, fixed())
    fake = SimpleNamespace(components=dict(pipe.components, transformer=compiled))
    with pytest.raises(ValueError, match="apply TaylorSeer first, then compile"):
        apply_taylorseer(fake, fixed())
    assert "step" not in vars(pipe.scheduler) and not is_wrapped(pipe.transformer)


def test_applying_twice_is_refused(cases):
    case = cases("flux")
    pipe = case.pipe
    reference = case(6)
    with apply_taylorseer(pipe, fixed(interval=3)) as handle:
        step = vars(pipe.scheduler)["step"]
        with pytest.raises(RuntimeError, match="already applied"):
            apply_taylorseer(pipe, fixed())
        with pytest.raises(RuntimeError, match="already applied"):
            apply_taylorseer(pipe.transformer, fixed())
        assert vars(pipe.scheduler)["step"] is step  # the refusal undid nothing of the first
        case(6)
        assert handle.stats["steps"] == 6 and handle.stats["forecast_steps"] > 0
    with apply_taylorseer(pipe.transformer, fixed()), pytest.raises(RuntimeError, match="already applied"):
        apply_taylorseer(pipe, fixed())  # the bare transformer is cached: the pipeline is refused
    assert "step" not in vars(pipe.scheduler) and not is_wrapped(pipe.transformer)
    assert torch.equal(case(6), reference)


def test_a_pipeline_without_a_transformer_is_refused():
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler()
    fake = SimpleNamespace(components={"unet": nn.Linear(2, 2), "scheduler": scheduler})
    with pytest.raises(ValueError, match=r"looked for the components \('transformer', 'transformer_2'\)"):
        apply_taylorseer(fake, fixed())
    assert "step" not in vars(scheduler) and "set_timesteps" not in vars(scheduler)


@pytest.mark.parametrize(("name", "sampler"), [("flux", "flow"), ("pixart", "diffusion")])
def test_the_default_spread_schedule_follows_the_pipelines_scheduler(cases, name, sampler):
    """No num_steps, no sampler given: the placement of the scheduler's kind of sampler, for each
    run length the scheduler reports."""
    case = cases(name)
    for steps in (20, 9):
        with apply_taylorseer(case.pipe) as handle, recording() as trajectory:
            case(steps)
            stats = handle.stats
        assert handle.config.sampler == sampler
        expected = TaylorSeerConfig(sampler=sampler).spread_placement(steps)
        assert stats["steps"] == steps and trajectory.steps[0] == expected
