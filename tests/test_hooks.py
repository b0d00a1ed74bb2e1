"""Hook lifecycle on the toy DiT-like model."""

import dataclasses

import pytest
import torch

from taylorseer import TaylorSeerConfig, apply_taylorseer
from taylorseer.config import TERM_RATIOS
from toy_models import ToyDiT, nonuniform_timesteps, run

pytestmark = pytest.mark.integration

GRANULARITIES = ["module", "block", "stack", "model"]


def hidden(batch=2, dtype=torch.float64):
    return torch.randn(batch, 4, 8, generator=torch.Generator().manual_seed(1), dtype=dtype)


def max_relative_error(outputs, reference):
    return max(
        ((o - r).norm() / r.norm()).item() for step, ref in zip(outputs, reference) for o, r in zip(step, ref)
    )


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_quadratic_features_are_reproduced_on_a_nonuniform_schedule(granularity):
    model = ToyDiT().double()
    timesteps = nonuniform_timesteps(30)
    reference = run(model, timesteps, hidden())
    config = TaylorSeerConfig(
        interval=4, order=2, form="newton", abscissa="timestep", granularity=granularity, gap_ratio=None
    )
    handle = apply_taylorseer(model, config)
    model.calls = 0
    outputs = run(model, timesteps, hidden())
    assert max_relative_error(outputs, reference) < 1e-6
    assert (
        handle.stats["forecast_steps"] > 0
        and handle.stats["full_steps"] + handle.stats["forecast_steps"] == 30
    )
    if granularity == "model":
        assert model.calls == handle.stats["full_steps"]  # forecast steps skip the model entirely


def test_module_granularity_recomputes_gates_with_the_current_timestep():
    model = ToyDiT(modulated=True).double()
    timesteps = nonuniform_timesteps(30)
    reference = run(model, timesteps, hidden())
    config = dict(interval=4, order=2, abscissa="timestep", gap_ratio=None)
    with apply_taylorseer(model, TaylorSeerConfig(granularity="module", **config)):
        assert max_relative_error(run(model, timesteps, hidden()), reference) < 1e-6
    with apply_taylorseer(model, TaylorSeerConfig(granularity="model", **config)):
        assert (
            max_relative_error(run(model, timesteps, hidden()), reference) > 1e-4
        )  # gates are not polynomial


def test_step_abscissa_is_not_exact_on_a_nonuniform_timestep_grid():
    model = ToyDiT().double()
    timesteps = nonuniform_timesteps(30)
    reference = run(model, timesteps, hidden())
    with apply_taylorseer(model, TaylorSeerConfig(interval=4, order=2, abscissa="step")):
        assert max_relative_error(run(model, timesteps, hidden()), reference) > 1e-4


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_remove_restores_bit_exact_outputs(granularity):
    model = ToyDiT(modulated=True, mix=0.5)
    timesteps = nonuniform_timesteps(12)
    x = hidden(dtype=torch.float32)
    reference = run(model, timesteps, x)
    handle = apply_taylorseer(model, TaylorSeerConfig(interval=3, granularity=granularity))
    cached = run(model, timesteps, x)
    assert any(not torch.equal(c[0], r[0]) for c, r in zip(cached, reference))  # the cache did act
    handle.remove()
    assert "forward" not in model.__dict__
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert all(torch.equal(a[0], b[0]) for a, b in zip(run(model, timesteps, x), reference))
    with pytest.raises(RuntimeError, match="already removed"):
        handle.remove()


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_interval_one_is_bit_identical_to_no_cache(granularity):
    model = ToyDiT(modulated=True, mix=0.5)
    timesteps = nonuniform_timesteps(10)
    x = hidden(dtype=torch.float32)
    reference = run(model, timesteps, x, branches=2)
    with apply_taylorseer(model, TaylorSeerConfig(interval=1, granularity=granularity)) as handle:
        outputs = run(model, timesteps, x, branches=2)
        assert handle.stats["forecast_steps"] == 0
    assert all(torch.equal(a, b) for step, ref in zip(outputs, reference) for a, b in zip(step, ref))


def test_applying_twice_raises():
    model = ToyDiT()
    handle = apply_taylorseer(model, TaylorSeerConfig(granularity="module"))
    with pytest.raises(RuntimeError, match="already applied"):
        apply_taylorseer(model, TaylorSeerConfig())
    with pytest.raises(RuntimeError, match="already applied"):
        apply_taylorseer(model.blocks[0], TaylorSeerConfig())  # a part of a cached model
    handle.remove()
    apply_taylorseer(model, TaylorSeerConfig()).remove()


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_cfg_branches_keep_separate_state(granularity):
    """Two calls per step (cond, uncond) forecast the same as two models cached separately."""
    timesteps = nonuniform_timesteps(15)
    x = hidden(dtype=torch.float64)
    config = TaylorSeerConfig(interval=3, order=1, granularity=granularity)
    model = ToyDiT(modulated=True, mix=0.5).double()
    with apply_taylorseer(model, config):
        together = run(model, timesteps, x, branches=2)
    for k in range(2):
        alone = ToyDiT(modulated=True, mix=0.5).double()
        with apply_taylorseer(alone, config):
            separate = run(alone, timesteps, x + k)
        assert all(torch.equal(a[k], b[0]) for a, b in zip(together, separate))


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_a_new_run_resets_by_itself_and_runs_repeat_exactly(granularity):
    model = ToyDiT(modulated=True, mix=0.5)
    x = hidden(dtype=torch.float32)
    handle = apply_taylorseer(model, TaylorSeerConfig(interval=4, granularity=granularity))
    first = run(model, nonuniform_timesteps(20), x)
    assert handle.stats["steps"] == 20
    run(model, nonuniform_timesteps(13), x * 3)  # another run, other step count, other input
    assert handle.stats["steps"] == 13
    second = run(model, nonuniform_timesteps(20), x)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second))
    handle.reset()
    assert handle.stats["cache_bytes"] == 0 and handle.stats["steps"] == 0


def test_stats_count_steps_modules_and_bytes():
    model = ToyDiT(depth=3)
    with apply_taylorseer(
        model, TaylorSeerConfig(interval=5, order=1, warmup=1, granularity="module")
    ) as handle:
        run(model, nonuniform_timesteps(11), hidden(dtype=torch.float32), branches=2)
        stats = handle.stats
    assert stats["cached_modules"] == 6  # attn and mlp of three blocks
    assert (stats["full_steps"], stats["forecast_steps"]) == (3, 8)  # steps 0, 5, 10
    assert (stats["full_calls"], stats["forecast_calls"]) == (6, 16)
    # two factors (order 1) per module and branch, each (2, 4, 8) float32
    assert stats["cache_bytes"] == 6 * 2 * 2 * (2 * 4 * 8 * 4)


def test_a_changed_input_shape_within_a_run_runs_in_full():
    model = ToyDiT(modulated=True, mix=0.5)
    timesteps = nonuniform_timesteps(5)
    with apply_taylorseer(model, TaylorSeerConfig(interval=5, warmup=1, order=0)) as handle:
        for i, t in enumerate(timesteps):
            batch = 2 if i < 3 else 3  # the batch grows mid-run
            out = model(hidden_states=torch.ones(batch, 4, 8), timestep=torch.full((batch,), t))
            assert out.shape[0] == batch
        assert handle.stats["full_calls"] == 2  # step 0, and step 3 where the shapes changed


def test_zero_match_raises_saying_what_was_searched():
    class NoBlocks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)

        def forward(self, hidden_states, timestep):
            return self.proj(hidden_states)

    with pytest.raises(ValueError, match="no block list found"):
        apply_taylorseer(NoBlocks(), TaylorSeerConfig(granularity="module"))

    class Opaque(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Linear(4, 4)

        def forward(self, hidden_states):
            return self.inner(hidden_states)

    class OpaqueBlocks(NoBlocks):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Opaque(), Opaque()])

    with pytest.raises(ValueError, match="looked for the children"):
        apply_taylorseer(OpaqueBlocks(), TaylorSeerConfig(granularity="module"))
    model = OpaqueBlocks()
    apply_taylorseer(model, TaylorSeerConfig(granularity="block")).remove()  # blocks alone are fine


def test_model_without_timestep_input_raises():
    with pytest.raises(ValueError, match="timestep"):
        apply_taylorseer(torch.nn.Linear(2, 2), TaylorSeerConfig())


def test_schedule_from_the_end_needs_num_steps():
    model = ToyDiT()
    with apply_taylorseer(model, TaylorSeerConfig(final_full=2)) as handle:
        with pytest.raises(ValueError, match="handle.run"):
            run(model, nonuniform_timesteps(3), hidden(dtype=torch.float32))
        with handle.run(num_steps=3):  # the run's length given for this run alone
            run(model, nonuniform_timesteps(3), hidden(dtype=torch.float32))
        assert handle.stats["full_steps"] == 3  # warm-up 3 (order 2 + 1), and final_full
    model = ToyDiT()
    with apply_taylorseer(
        model, TaylorSeerConfig(interval=6, warmup=1, final_full=2, num_steps=10, schedule="fixed")
    ) as handle:
        run(model, nonuniform_timesteps(10), hidden(dtype=torch.float32))
        assert handle.stats["full_steps"] == 4  # 0, 6, 8, 9
        with pytest.raises(ValueError, match="past num_steps=10"):
            model(hidden_states=hidden(dtype=torch.float32), timestep=torch.zeros(2) - 5)


def test_an_exception_mid_run_leaves_the_next_run_correct():
    model = ToyDiT(modulated=True, mix=0.5)
    x = hidden(dtype=torch.float32)
    timesteps = nonuniform_timesteps(12)
    config = TaylorSeerConfig(interval=4, granularity="module")
    with apply_taylorseer(model, config):
        clean = run(model, timesteps, x)
    handle = apply_taylorseer(model, config)
    original = model.blocks[1].mlp.proj.forward
    model.blocks[1].mlp.proj.forward = lambda h: (_ for _ in ()).throw(KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        run(model, timesteps, x)
    model.blocks[1].mlp.proj.forward = original
    assert all(torch.equal(a[0], b[0]) for a, b in zip(run(model, timesteps, x), clean))
    handle.remove()


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_a_forecast_that_overflows_falls_back_to_full_compute(granularity):
    model = ToyDiT(modulated=True, mix=0.5)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.coefficients.mul_(1e6)  # features far beyond float16's range
    timesteps = nonuniform_timesteps(12)
    x = hidden(dtype=torch.float32)
    reference = run(model, timesteps, x)
    config = TaylorSeerConfig(interval=4, order=1, granularity=granularity, factors_dtype="float16")
    with apply_taylorseer(model, config) as handle:
        outputs = run(model, timesteps, x)
        stats = handle.stats
    assert all(torch.isfinite(o[0]).all() for o in outputs)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(outputs, reference))  # every step recomputed
    assert stats["nonfinite_fallbacks"] == 8 and stats["forecast_steps"] == 0  # 12 steps, 4 scheduled full


def test_memory_budget_falls_back_to_a_leaner_granularity_and_is_never_exceeded():
    model = ToyDiT(depth=3, modulated=True, mix=0.5)
    timesteps = nonuniform_timesteps(12)
    x = hidden(dtype=torch.float32)
    feature = 2 * 4 * 8 * 4  # bytes of one (2, 4, 8) float32 feature
    # order 1: module needs 6 units x 2 factors; stack and model 1 x 2 factors
    budget = 3 * feature
    config = TaylorSeerConfig(
        interval=3, order=1, granularity="module", memory_budget=budget, schedule="fixed", num_steps=12
    )
    with pytest.warns(UserWarning) as caught, apply_taylorseer(model, config) as handle:
        outputs = run(model, timesteps, x)
        stats = handle.stats
    assert [str(w.message).split(": ")[-1] for w in caught] == ["using granularity 'stack'"]
    assert stats["granularity"] == "stack" and 0 < stats["cache_bytes"] <= budget
    assert stats["forecast_steps"] > 0
    with apply_taylorseer(model, dataclasses.replace(config, granularity="stack", memory_budget=None)):
        assert all(torch.equal(a[0], b[0]) for a, b in zip(outputs, run(model, timesteps, x)))
    too_small = dataclasses.replace(config, memory_budget=feature)
    with pytest.warns(UserWarning), apply_taylorseer(model, too_small) as handle:
        for _ in range(2):  # every run raises: never a run in full counted as forecasts
            with pytest.raises(ValueError, match=f"memory_budget={feature} bytes is too small"):
                run(model, timesteps, x)
            assert handle.stats["forecast_calls"] == 0 and handle.stats["cache_bytes"] == 0
    assert "forward" not in model.__dict__  # the failed run left the model clean


def test_two_models_in_two_threads_keep_their_own_state():
    import threading

    timesteps = nonuniform_timesteps(15)
    models = [ToyDiT(modulated=True, mix=0.5, seed=s) for s in (0, 1)]
    inputs = [hidden(dtype=torch.float32), hidden(dtype=torch.float32) * 2]
    config = TaylorSeerConfig(interval=3, granularity="module")
    alone = []
    for model, x in zip(models, inputs):
        with apply_taylorseer(model, config):
            alone.append(run(model, timesteps, x))
    together: dict[int, list] = {}
    handles = [apply_taylorseer(model, config) for model in models]

    def work(k: int) -> None:
        together[k] = run(models[k], timesteps, inputs[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for handle in handles:
        handle.remove()
    for k in (0, 1):
        assert all(torch.equal(a[0], b[0]) for a, b in zip(together[k], alone[k]))


@pytest.mark.parametrize("change", ["dtype", "batch"])
def test_a_new_run_with_other_inputs_reuses_no_stale_factors(change):
    model = ToyDiT(modulated=True, mix=0.5).double()
    timesteps = nonuniform_timesteps(10)
    first = hidden(dtype=torch.float64)
    second = first.float() if change == "dtype" else torch.cat([first, first])
    config = TaylorSeerConfig(interval=4, granularity="model")
    with apply_taylorseer(model, config) as handle:
        run(model, timesteps, first)
        model.to(second.dtype)
        cached = run(model, timesteps, second)
        assert handle.stats["full_steps"] == 4  # the second run started over: 0, 1, 5, 9
    with apply_taylorseer(model, config):
        fresh = run(model, timesteps, second)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(cached, fresh))


class FloatTimestep(torch.nn.Module):
    """ToyDiT taking the timestep as a Python float, so that it can run on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = ToyDiT(modulated=True, mix=0.5)

    def forward(self, hidden_states: torch.Tensor, timestep: float) -> torch.Tensor:
        t = torch.full(hidden_states.shape[:1], timestep).to(hidden_states)
        return self.inner(hidden_states=hidden_states, timestep=t)


@pytest.mark.parametrize("granularity", ["module", "block", "stack", "model"])
def test_a_device_change_mid_run_reuses_no_factors_from_the_old_device(granularity):
    model, reference = FloatTimestep(), FloatTimestep()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    timesteps = nonuniform_timesteps(6)
    x = hidden(dtype=torch.float32)
    config = TaylorSeerConfig(interval=3, order=2, schedule="fixed", granularity=granularity)
    with apply_taylorseer(model, config) as handle:
        model.to("meta")
        for t in timesteps[:3]:  # steps 0-2, full: factors recorded on the meta device
            assert model(hidden_states=x.to("meta"), timestep=t).is_meta
        model.to_empty(device="cpu").load_state_dict(weights)
        step3 = model(hidden_states=x, timestep=timesteps[3])  # scheduled forecast, but the device changed
        assert torch.equal(step3, reference(hidden_states=x, timestep=timesteps[3]))
        assert handle.stats["full_steps"] == 4 and handle.stats["forecast_steps"] == 0
        step4 = model(hidden_states=x, timestep=timesteps[4])  # forecast from the cpu factors alone
        assert step4.device.type == "cpu" and torch.isfinite(step4).all()
        assert handle.stats["forecast_steps"] == 1


def forecasts_on_a_toy(**fields):
    """The outputs of a fixed-schedule run over 30 timesteps under a config with `fields`."""
    common = dict(interval=4, warmup=3, schedule="fixed", abscissa="timestep", gap_ratio=None)
    model = ToyDiT().double()
    with apply_taylorseer(model, TaylorSeerConfig(**common, **fields)):
        return torch.stack([step[0] for step in run(model, nonuniform_timesteps(30), hidden())])


def test_the_configs_term_ratio_reaches_every_forecast():
    first = forecasts_on_a_toy(order=1)
    all_dropped = forecasts_on_a_toy(order=2, term_ratio=1e-12)
    assert torch.allclose(all_dropped, first, rtol=0, atol=1e-12)
    assert (forecasts_on_a_toy(order=2, term_ratio=None) - first).abs().max() > 1e-6  # all kept


def test_the_default_term_ratio_is_the_samplers(monkeypatch):
    monkeypatch.setitem(TERM_RATIOS, "flow", 1e-12)  # flow drops every term of order 2
    first = forecasts_on_a_toy(order=1)
    assert torch.allclose(forecasts_on_a_toy(order=2, sampler="flow"), first, rtol=0, atol=1e-12)
    assert (forecasts_on_a_toy(order=2, sampler="diffusion") - first).abs().max() > 1e-6
    assert (forecasts_on_a_toy(order=2, sampler="flow", term_ratio=None) - first).abs().max() > 1e-6
