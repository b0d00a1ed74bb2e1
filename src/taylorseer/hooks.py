"""Wiring only: per-instance forward wrappers that call the original or return a forecast.

Each wrapper asks the engine's current CallContext what to do; outside a call of the top-level
model (context None) every wrapper is transparent.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import TreeSpec, tree_flatten, tree_leaves, tree_unflatten

from taylorseer.discovery import Block
from taylorseer.engine import CallContext, Engine
from taylorseer.state import BudgetExceeded

Forward = Callable[..., Any]
Undo = Callable[[], None]


class StreamsChangeShape(ValueError):
    """Granularity "stack" met a model whose blocks change a stream's shape (e.g. HiDream)."""


def is_wrapped(module: nn.Module) -> bool:
    return getattr(module.__dict__.get("forward"), "_taylorseer", False)


def _verdict(output: Any, distance: Tensor | None) -> float:
    """One scalar off the device: the probe's distance (0 without a probe), NaN when `output`
    holds a non-finite value."""
    tensors = [leaf for leaf in tree_leaves(output) if isinstance(leaf, Tensor)]
    if not tensors:
        return 0.0 if distance is None else float(distance)
    finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all()
    if distance is None:
        return 0.0 if bool(finite) else math.nan
    return float(torch.where(finite.to(distance.device), distance, torch.nan))


def wrap_forward(module: nn.Module, make: Callable[[Forward], Forward]) -> Undo:
    """Replace `module.forward` on this instance only; the returned function restores it."""
    previous = module.__dict__.get("forward")  # another library's instance hook, if any
    original = module.forward
    wrapper = functools.wraps(original)(make(original))
    wrapper._taylorseer = True
    module.forward = wrapper

    def undo() -> None:
        if previous is None:
            del module.forward
        else:
            module.forward = previous

    return undo


def hook_model(model: nn.Module, engine: Engine) -> Undo:
    """The top-level wrapper: opens a CallContext; at granularity "model" it forecasts the output."""

    def make(original: Forward) -> Forward:
        def call(context: CallContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not context.full:
                feature = engine.model_feature
                output = (
                    original(*args, **kwargs)
                    if feature is None
                    else feature.predict(context.branch, context.x)
                )
                probe = engine.probe
                distance = probe.distance(context, lambda: original(*args, **kwargs)) if probe else None
                verdict = _verdict(output, distance)
                if verdict <= engine.config.effective_error_budget:
                    return output
                overflowed = math.isnan(verdict)  # else the probe found the forecast too far off
                engine.fall_back_to_full(context, "nonfinite_fallbacks" if overflowed else "probe_refreshes")
            while True:
                try:
                    output = original(*args, **kwargs)
                    if engine.model_feature is not None:
                        engine.model_feature.record(context.branch, output, context.x, context.order)
                    engine.record_call(context)
                    return output
                except BudgetExceeded as exceeded:
                    engine.downgrade(exceeded)  # hooks of a leaner granularity; then run the step again
                    context.scratch.clear()
                except StreamsChangeShape:
                    if engine.exceeded is None:
                        raise  # the user asked for "stack"
                    engine.downgrade(engine.exceeded, "does not apply to this model")  # a fallback: go on
                    context.scratch.clear()

        def forward(*args: Any, **kwargs: Any) -> Any:
            context = engine.begin(args, kwargs)
            succeeded = False
            try:
                output = call(context, args, kwargs)
                succeeded = True
                return output
            finally:
                engine.end(succeeded)

        return forward

    return wrap_forward(model, make)


def hook_module(path: str, module: nn.Module, engine: Engine) -> Undo:
    """Granularity "module": forecast this child's output; its block runs the rest."""
    feature = engine.new_feature(path)

    def make(original: Forward) -> Forward:
        def forward(*args: Any, **kwargs: Any) -> Any:
            context = engine.context
            if context is None:
                return original(*args, **kwargs)
            if not context.full:
                return feature.predict(context.branch, context.x)
            output = original(*args, **kwargs)
            feature.record(context.branch, output, context.x, context.order)
            return output

        return forward

    return wrap_forward(module, make)


def hook_skipped(module: nn.Module, engine: Engine) -> Undo:
    """A child that only feeds a cached child: on forecast steps, zero placeholders of its output."""
    templates: dict[int, tuple[list[Any], TreeSpec]] = {}  # branch -> (leaf shapes, structure)

    def make(original: Forward) -> Forward:
        def forward(*args: Any, **kwargs: Any) -> Any:
            context = engine.context
            if context is None:
                return original(*args, **kwargs)
            if context.full:
                output = original(*args, **kwargs)
                leaves, structure = tree_flatten(output)
                shapes = [(t.shape, t.dtype, t.device) if isinstance(t, Tensor) else t for t in leaves]
                templates[context.branch] = (shapes, structure)
                return output
            shapes, structure = templates[context.branch]
            zeros = [
                torch.zeros((), dtype=leaf[1], device=leaf[2]).expand(leaf[0])
                if isinstance(leaf, tuple)
                else leaf
                for leaf in shapes
            ]
            return tree_unflatten(zeros, structure)

        return forward

    return wrap_forward(module, make)


def _stream_inputs(block: Block, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Tensor]:
    return {arg.name: arg.get(args, kwargs) for arg in block.inputs}


def _stream_outputs(block: Block, output: Any) -> dict[str, Tensor]:
    outputs = block.spec.outputs or ()
    values = output if isinstance(output, (tuple, list)) else (output,)
    if len(values) != len(outputs):
        raise ValueError(
            f"{type(block.module).__name__} at {block.path} returned {len(values)} values; "
            f"its BlockSpec expects the streams {outputs}"
        )
    return dict(zip(outputs, values))


def _updates(inputs: dict[str, Tensor | None], outputs: dict[str, Tensor | None]) -> dict[str, Tensor | None]:
    """Each stream's residual update, output - input; None where the block returns no stream."""
    return {
        name: None if outputs[name] is None or value is None else outputs[name] - value
        for name, value in inputs.items()
    }


def _advance(inputs: dict[str, Tensor | None], updates: dict[str, Tensor | None]) -> dict[str, Tensor | None]:
    """The forecast streams: each input plus its forecast update (None stays None)."""
    return {name: None if updates[name] is None else value + updates[name] for name, value in inputs.items()}


def _assemble(block: Block, streams: dict[str, Tensor]) -> Any:
    """The block's output built from stream values, in the order the block returns them."""
    outputs = block.spec.outputs or ()
    return streams[outputs[0]] if len(outputs) == 1 else tuple(streams[name] for name in outputs)


def hook_block(block: Block, engine: Engine) -> Undo:
    """Granularity "block": forecast the block's residual update of each stream."""
    feature = engine.new_feature(block.path)

    def make(original: Forward) -> Forward:
        def forward(*args: Any, **kwargs: Any) -> Any:
            context = engine.context
            if context is None:
                return original(*args, **kwargs)
            inputs = _stream_inputs(block, args, kwargs)
            if not context.full:
                return _assemble(block, _advance(inputs, feature.predict(context.branch, context.x)))
            output = original(*args, **kwargs)
            feature.record(
                context.branch, _updates(inputs, _stream_outputs(block, output)), context.x, context.order
            )
            return output

        return forward

    return wrap_forward(block.module, make)


def hook_stack(blocks: list[Block], engine: Engine) -> list[Undo]:
    """Granularity "stack": skip every block and forecast the whole stack's residual update.

    On full calls the first block called notes the stack's input streams and each block its
    output; when the call ends, the last output minus the first input is recorded. On forecast
    calls every block passes its inputs through, and the block that came last on the previous
    full call adds the forecast update.
    """
    feature = engine.new_feature("stack")
    last_block: dict[int, str] = {}  # branch -> path of the block called last

    def finish(context: CallContext) -> None:
        first, (block, output) = context.scratch["stack_in"], context.scratch["stack_out"]
        last = _stream_outputs(block, output)
        for name, value in first.items():  # e.g. HiDream appends tokens to its text stream per block
            if value is not None and last[name] is not None and value.shape != last[name].shape:
                raise StreamsChangeShape(
                    "granularity 'stack' needs each stream to keep its shape through the blocks; "
                    f"{name} goes from {tuple(value.shape)} to {tuple(last[name].shape)}: "
                    "use 'block' or 'model'"
                )
        feature.record(context.branch, _updates(first, last), context.x, context.order)
        last_block[context.branch] = block.path

    engine.on_full_call_end.append(finish)

    def hook(block: Block) -> Undo:
        def make(original: Forward) -> Forward:
            def forward(*args: Any, **kwargs: Any) -> Any:
                context = engine.context
                if context is None:
                    return original(*args, **kwargs)
                inputs = _stream_inputs(block, args, kwargs)
                context.scratch.setdefault("stack_in", inputs)
                if context.full:
                    output = original(*args, **kwargs)
                    context.scratch["stack_out"] = (block, output)
                    return output
                if last_block.get(context.branch) == block.path:
                    inputs = _advance(inputs, feature.predict(context.branch, context.x))
                return _assemble(block, inputs)

            return forward

        return wrap_forward(block.module, make)

    return [hook(block) for block in blocks]
