"""The peers the benchmark compares against, applied to a bare transformer the way each documents.

- diffusers' ``TaylorSeerCache`` (``diffusers.hooks.taylorseer_cache``): per-module hooks that
  forecast module outputs with a step-index Taylor series. It counts calls to know the step and
  keys its state by a ``cache_context`` name that must be set around every model call.
- cache-dit's DBCache (``cache_dit.enable_cache``): always runs the first Fn blocks, compares their
  residual with the last computed step's (relative L1), and when it is below a threshold reuses
  (or, with its TaylorSeer calibrator, forecasts) the residual of the remaining blocks. It counts
  calls too, and keeps its context across runs unless refreshed.

Both hide behind ``Peer``: enter ``call_context()`` around every model call, ``reset()`` before each
sampling run, ``remove()`` when done. Nothing here changes how either peer decides its steps.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["CACHE_DIT_MODES", "Peer", "apply_cache_dit", "apply_diffusers_taylorseer"]

CACHE_DIT_MODES = ("dbcache", "dbcache+taylorseer")


@dataclass(frozen=True)
class Peer:
    """A peer cache applied to one transformer."""

    name: str
    hooked: tuple[str, ...]  # what the peer acts on: module names (diffusers), block lists (cache-dit)
    call_context: Callable[..., contextlib.AbstractContextManager]  # enter around every model call
    reset: Callable[[], None]  # forget everything from the previous run; call before each run
    remove: Callable[[], None]  # restore the original forward passes
    computed_steps: Callable[[], int | None]  # full-model steps in this run (None: peer cannot tell)

    def wrap(self, fn: Callable) -> Callable:
        """``fn`` with ``call_context()`` entered around every call (e.g. a model's forward)."""

        @functools.wraps(fn)
        def call(*args, **kwargs):
            with self.call_context():
                return fn(*args, **kwargs)

        return call


# ----------------------------------------------------------------------------------------------
# diffusers TaylorSeerCache


def apply_diffusers_taylorseer(
    transformer: nn.Module,
    interval: int,
    order: int,
    warmup: int,
    identifiers: Sequence[str] | None = None,
    skip_identifiers: Sequence[str] | None = None,
    factors_dtype: torch.dtype = torch.float32,
) -> Peer:
    """Apply diffusers' TaylorSeerCache to ``transformer`` (a diffusers model or any nn.Module).

    interval -> ``cache_interval``, order -> ``max_order``, warmup -> ``disable_cache_before_step``.
    Its schedule (by call count): steps < warmup are full, then every step with
    ``(step - warmup - 1) % interval == 0``; e.g. interval 6, warmup 3: 0 1 2 4 10 16 ...
    ``identifiers``: regexes (``re.fullmatch`` on module names) of the modules to cache; None keeps
    diffusers' default (names matching ``^blocks.*attn``, ``^transformer_blocks.*attn``,
    ``^single_transformer_blocks.*attn``, ``^temporal_transformer_blocks.*attn``).
    ``skip_identifiers`` -> ``skip_predict_identifiers``: modules that only feed a cached one (FLUX
    single blocks: ``attn``, ``proj_mlp`` feed ``proj_out``); they return zeros on forecast steps.
    ``factors_dtype``: diffusers defaults to bfloat16; its documented example uses float32, as here.

    Diffusers models use their documented ``enable_cache`` / ``disable_cache``; plain modules get the
    same hooks through ``apply_taylorseer_cache`` and the hook registry. Raises ValueError if the
    identifiers match no module (diffusers would then run at full cost without a word).
    """
    from diffusers.hooks import HookRegistry, TaylorSeerCacheConfig, apply_taylorseer_cache
    from diffusers.hooks.taylorseer_cache import _TAYLORSEER_CACHE_HOOK as HOOK
    from diffusers.models.cache_utils import CacheMixin

    config = TaylorSeerCacheConfig(
        cache_interval=interval, disable_cache_before_step=warmup, max_order=order,
        taylor_factors_dtype=factors_dtype,
        cache_identifiers=None if identifiers is None else list(identifiers),
        skip_predict_identifiers=None if skip_identifiers is None else list(skip_identifiers),
    )  # fmt: skip
    is_mixin = isinstance(transformer, CacheMixin)
    if is_mixin:
        transformer.enable_cache(config)
    else:
        apply_taylorseer_cache(transformer, config)
    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    registry.invalidate_child_registries_cache()  # enable_cache does this; apply_* alone does not

    def remove() -> None:
        if is_mixin:
            transformer.disable_cache()
        else:
            registry.remove_hook(HOOK, recurse=True)
            registry.invalidate_child_registries_cache()

    hooks = {
        name: module._diffusers_hook.get_hook(HOOK)
        for name, module in transformer.named_modules()
        if hasattr(module, "_diffusers_hook") and module._diffusers_hook.get_hook(HOOK) is not None
    }
    if not hooks:
        remove()
        wanted = identifiers if identifiers is not None else "its default identifiers"
        raise ValueError(
            f"diffusers TaylorSeerCache matched no module of {type(transformer).__name__} by {wanted}"
        )
    probe = next(iter(hooks.values()))  # all hooks share one schedule; one tells whether a call computed
    computed = [0]

    @contextlib.contextmanager
    def call_context(branch: str = "cond"):
        # Pipelines wrap each call in transformer.cache_context("cond"/"uncond"); the name keys the
        # hooks' state. Any nn.Module works: the method only walks the hook registries.
        with CacheMixin.cache_context(transformer, branch):
            yield
            state = probe.state_manager.get_state()
            computed[0] += int(branch == "cond" and state.last_update_step == state.current_step)

    def reset() -> None:
        # What pipelines do after each run (maybe_free_model_hooks -> _reset_stateful_cache);
        # without it the step counter and factors carry over into the next run.
        registry.reset_stateful_hooks(recurse=True)
        computed[0] = 0

    return Peer("diffusers-taylorseer", tuple(hooks), call_context, reset, remove, lambda: computed[0])


# ----------------------------------------------------------------------------------------------
# cache-dit DBCache (+ TaylorSeer calibrator)


def _block_lists(transformer: nn.Module) -> dict[str, nn.ModuleList]:
    """The transformer's top-level ``*blocks`` lists (FLUX: double and single blocks)."""
    children = transformer.named_children()
    return {name: m for name, m in children if isinstance(m, nn.ModuleList) and name.endswith("blocks")}


def _untie_cached_blocks(transformer: nn.Module) -> None:
    """Remove the cycle cache-dit puts in the module tree, keeping its behaviour.

    Its cached-blocks modules hold the transformer as a registered child, and during a forward the
    transformer's block list holds them: transformer -> blocks -> cached -> transformer. Module walks
    (FlopCounterMode's ModuleTracker, when the model is entered through ``.forward`` as
    ``DiT.forward_with_cfg`` does) then recurse forever. The blocks live only in the closure of the
    forward cache-dit installs; keep their ``transformer`` attribute but not as a child. Should that
    layout change, nothing is done (and such walks fail loudly, not silently).
    """
    forward = getattr(transformer.forward, "func", None)
    outer = inspect.getclosurevars(forward).nonlocals if inspect.isfunction(forward) else {}
    inner = outer.get("new_forward")
    unified = (
        inspect.getclosurevars(inner).nonlocals.get("unified_blocks", {}) if inspect.isfunction(inner) else {}
    )
    for cached_list in unified.values():
        for cached in cached_list:
            if cached._modules.get("transformer") is transformer:
                del cached._modules["transformer"]
                vars(cached)["transformer"] = transformer


def _steps_mask(full_steps: Sequence[int] | None, num_steps: int | None) -> dict[str, Any]:
    """cache-dit's DBCacheConfig fields that force `full_steps` to compute and the rest to cache."""
    if full_steps is None:
        return {}
    if num_steps is None:
        raise ValueError(f"full_steps {list(full_steps)} needs num_steps, the length of the run")
    mask = [int(step in set(full_steps)) for step in range(num_steps)]
    return dict(steps_computation_mask=mask, steps_computation_policy="static")


def apply_cache_dit(
    transformer: nn.Module,
    mode: str = "dbcache",
    num_steps: int | None = None,
    *,
    fn_blocks: int | None = None,
    bn_blocks: int = 0,
    threshold: float | None = None,
    warmup: int = 8,
    order: int = 1,
    separate_cfg: bool = False,
    full_steps: Sequence[int] | None = None,
) -> Peer:
    """Apply cache-dit's DBCache (``mode="dbcache"``) or DBCache with its TaylorSeer calibrator
    (``mode="dbcache+taylorseer"``) to a bare transformer.

    Settings follow cache-dit's docs: DBCache defaults are F8B0, 8 warm-up steps, residual diff
    threshold 0.08, no cap on cached steps; with TaylorSeer the docs recommend FnB0 and show
    threshold 0.12 with ``taylorseer_order=1`` (1 or 2 recommended). F8 assumes FLUX.1-sized stacks
    (57 blocks); for stacks under 16 blocks ``fn_blocks=None`` uses F1 (the docs' F1B0 variant),
    so a cached step still runs 1 block as the probe and the rest is reused or forecast.

    ``num_steps`` is passed as ``num_inference_steps``, which the docs require for transformer-only
    use (cache-dit then refreshes its context by itself, one call into the next run); ``reset()``
    refreshes explicitly with ``cache_dit.refresh_context``. ``separate_cfg``: whether the sampler
    makes two calls per step (cond, uncond) instead of one call on a doubled batch.
    ``full_steps``: the steps that compute all blocks, as cache-dit's ``steps_computation_mask``
    with its "static" policy (the others always use the cache; needs ``num_steps``); None leaves
    the choice to its residual threshold.

    Diffusers models cache-dit has an adapter for (FLUX: double and single blocks as one stack)
    go through ``cache_dit.enable_cache(transformer)``; other models need a ``BlockAdapter`` with
    their block list and forward pattern: here modules with a ``blocks`` list whose blocks map
    ``(x, *args) -> x`` (the native DiT: ``block(x, c)``, cache-dit's Pattern_3).
    """
    import cache_dit
    from cache_dit import (
        BlockAdapter,
        BlockAdapterRegister,
        DBCacheConfig,
        ForwardPattern,
        TaylorSeerCalibratorConfig,
    )

    if mode not in CACHE_DIT_MODES:
        raise ValueError(f"mode must be one of {CACHE_DIT_MODES}, got {mode!r}")
    lists = _block_lists(transformer)
    n_blocks = sum(len(blocks) for blocks in lists.values())
    fn_blocks = fn_blocks if fn_blocks is not None else (8 if n_blocks >= 16 else 1)
    if threshold is None:
        threshold = 0.08 if mode == "dbcache" else 0.12
    cache_config = DBCacheConfig(
        Fn_compute_blocks=fn_blocks, Bn_compute_blocks=bn_blocks, max_warmup_steps=warmup,
        max_cached_steps=-1, residual_diff_threshold=threshold, enable_separate_cfg=separate_cfg,
        num_inference_steps=num_steps, **_steps_mask(full_steps, num_steps),
    )  # fmt: skip
    calibrator = TaylorSeerCalibratorConfig(taylorseer_order=order) if mode == "dbcache+taylorseer" else None

    # Registration is by class-name prefix ("DiT" would claim our native DiT), so require diffusers.
    from_diffusers = transformer.__module__.startswith("diffusers")
    if from_diffusers and BlockAdapterRegister.is_supported(transformer):
        target = transformer
    elif "blocks" in lists:
        pattern = ForwardPattern.Pattern_3  # block(hidden_states, *args) -> hidden_states
        target = BlockAdapter(
            transformer=transformer, blocks=lists["blocks"], blocks_name="blocks", forward_pattern=pattern
        )
    else:
        raise NotImplementedError(
            f"cache-dit needs the block list and forward pattern of {type(transformer).__name__}; this "
            "wrapper knows the diffusers models cache-dit supports and modules with a `blocks` list of "
            "x -> x blocks"
        )
    if fn_blocks + bn_blocks > n_blocks:
        raise ValueError(f"Fn + Bn = {fn_blocks + bn_blocks} exceeds the {n_blocks} blocks of the model")
    had_own_forward = "forward" in vars(transformer)
    child_order = list(transformer._modules)  # cache-dit's per-call mock.patch moves block lists last
    cache_dit.enable_cache(
        target, cache_config=copy.deepcopy(cache_config), calibrator_config=copy.deepcopy(calibrator)
    )
    _untie_cached_blocks(transformer)

    def reset() -> None:
        refresh = dict(cache_config=copy.deepcopy(cache_config))
        if calibrator is not None:
            refresh["calibrator_config"] = copy.deepcopy(calibrator)
        cache_dit.refresh_context(transformer, **refresh)

    def remove() -> None:
        cache_dit.disable_cache(target)
        # disable_cache restores the forward it wrapped, which for FLUX is cache-dit's patched copy
        # (FluxPatchFunctor); drop that too so the class's own forward runs again.
        if not had_own_forward:
            vars(transformer).pop("forward", None)
            vars(transformer).pop("_is_patched", None)
        for name in child_order:
            transformer._modules[name] = transformer._modules.pop(name)

    def computed_steps() -> int | None:
        # cache-dit's stats, written after each call, or only at a run's last step when num_steps is set.
        stats = cache_dit.summary(transformer, logging=False)[-1]
        return stats.accumulated_executed_steps - stats.accumulated_cached_steps

    # cache-dit counts calls itself and needs no context around them.
    return Peer(
        f"cache-dit-{mode}",
        tuple(lists),
        lambda branch="cond": contextlib.nullcontext(),
        reset,
        remove,
        computed_steps,
    )
