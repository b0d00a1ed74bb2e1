"""The public verb: `apply_taylorseer(model, config)` and the handle it returns."""

from __future__ import annotations

from typing import Any

from torch import nn

from taylorseer import hooks
from taylorseer.config import TaylorSeerConfig
from taylorseer.discovery import cached_children, discover_blocks, timestep_argument
from taylorseer.engine import Engine
from taylorseer.probe import Probe


class TaylorSeerHandle:
    """What `apply_taylorseer` returns: `stats`, `reset()` and `remove()`."""

    def __init__(self, model: nn.Module, engine: Engine, undo: hooks.Undo) -> None:
        self.model = model
        self.config = engine.config
        self._engine = engine
        self._undo: hooks.Undo | None = undo

    @property
    def stats(self) -> dict[str, Any]:
        """Counts of the current (or last) run: full_steps, forecast_steps, full_calls,
        forecast_calls, nonfinite_fallbacks (forecasts that overflowed and were recomputed),
        probe_refreshes (adaptive: forecasts the probe turned full), steps, granularity,
        cached_modules, cache_bytes (bytes of factors held now)."""
        return self._engine.stats

    def reset(self) -> None:
        """Drop every cached factor; the next call starts a new run. (New runs are also detected
        by themselves, from the timestep moving back toward the start of the schedule.)"""
        self._engine.reset()

    def remove(self) -> None:
        """Restore the model's original forwards and free the cache."""
        if self._undo is None:
            raise RuntimeError("this TaylorSeer handle was already removed")
        self._undo()
        self._undo = None
        self._engine.reset()

    def __enter__(self) -> TaylorSeerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


def apply_taylorseer(model: nn.Module, config: TaylorSeerConfig | None = None) -> TaylorSeerHandle:
    """Cache `model` (a diffusion transformer) with TaylorSeer forecasting, in place.

    Hooks are per instance; `handle.remove()` gives back the untouched model. Raises ValueError
    when nothing cacheable is found, and RuntimeError when `model` is already cached.
    """
    config = config or TaylorSeerConfig()
    if not isinstance(config, TaylorSeerConfig):
        raise TypeError(f"config must be a TaylorSeerConfig, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if any(hooks.is_wrapped(module) for module in model.modules()):
        raise RuntimeError(
            f"TaylorSeer is already applied to this {type(model).__name__}: remove() its handle first"
        )
    if config.needs_num_steps and config.num_steps is None:
        raise ValueError(
            "the schedule counts from the end of the run (final_full or negative full_steps): "
            "set TaylorSeerConfig(num_steps=...)"
        )
    engine = Engine(config, timestep_argument(model))
    unit_hooks: list[hooks.Undo] = []

    def uninstall() -> None:
        for undo in reversed(unit_hooks):
            undo()
        unit_hooks.clear()

    def install(granularity: str) -> None:
        uninstall()
        engine.clear_features()
        _hook_cached_units(model, engine, granularity, unit_hooks)
        if config.schedule == "adaptive":  # outermost on the first block: sees its real output
            engine.probe = Probe(discover_blocks(model)[0], engine)
            unit_hooks.append(hooks.wrap_forward(engine.probe.block.module, engine.probe.wrap))

    engine.install = install
    try:
        install(config.granularity)
        undo_model = hooks.hook_model(model, engine)
    except BaseException:
        uninstall()
        raise

    def remove() -> None:
        uninstall()
        undo_model()

    return TaylorSeerHandle(model, engine, remove)


def _hook_cached_units(model: nn.Module, engine: Engine, granularity: str, undo: list[hooks.Undo]) -> None:
    """Install the hooks of `granularity`, appending each one's undo as it goes."""
    if granularity == "model":
        engine.model_feature = engine.new_feature("")
        return
    blocks = discover_blocks(model)
    if granularity == "module":
        for path, module, skipped in cached_children(blocks):
            hook = hooks.hook_skipped(module, engine) if skipped else hooks.hook_module(path, module, engine)
            undo.append(hook)
        return
    for block in blocks:
        if set(block.spec.outputs or ()) != set(block.spec.inputs):
            raise ValueError(
                f"{type(block.module).__name__} returns the streams {block.spec.outputs} but takes "
                f"{block.spec.inputs}: granularity {granularity!r} needs them to match"
            )
    if granularity == "block":
        undo.extend(hooks.hook_block(block, engine) for block in blocks)
    else:
        undo.extend(hooks.hook_stack(blocks, engine))
