"""One strategy per granularity: which forwards it wraps, and what it records and forecasts.

Each wrapper asks the runtime's current CallContext what to do; outside a call of the top-level
model (context None) every wrapper is transparent. A strategy also says what a forecast call of
the whole model returns (`forecast`) and what happens once a full call has run (`finish`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

from taylorseer.runtime.calls import CallContext, Runtime
from taylorseer.wiring.discovery import Block, cached_children, discover_blocks
from taylorseer.wiring.forwards import Forward, Undo, wrap_forward
from taylorseer.wiring.streams import advance, assemble, stream_inputs, stream_outputs, updates


class StreamsChangeShape(ValueError):
    """Granularity "stack" met a model whose blocks change a stream's shape (e.g. HiDream)."""


class Granularity:
    """What is forecast. One instance per installation; `install` appends an undo per wrapper."""

    name = ""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def install(self, model: nn.Module, undo: list[Undo]) -> None:
        raise NotImplementedError

    def forecast(self, context: CallContext, run_model: Callable[[], Any]) -> Any:
        """The model's output on a forecast call: by default its forward, whose hooks forecast."""
        return run_model()

    def finish(self, context: CallContext, output: Any) -> Any:
        """After a full call of the model returned `output`: what the call returns."""
        return output


class ModelOutput(Granularity):
    """The model's output itself is forecast: forecast calls never enter the model. With the
    runtime's `hindsight`, each full step's first output tensor (the prediction the sampler steps
    with) is corrected for the gap of forecasts before it."""

    name = "model"

    def install(self, model: nn.Module, undo: list[Undo]) -> None:
        self.feature = self.runtime.new_feature("")

    def forecast(self, context: CallContext, run_model: Callable[[], Any]) -> Any:
        output = self.feature.predict(context.branch, context.x)
        if self.runtime.hindsight is not None:
            self.runtime.hindsight.forecast(
                context.branch, context.step, context.timestep, _first_tensor(output)[0]
            )
        return output

    def finish(self, context: CallContext, output: Any) -> Any:
        hindsight = self.runtime.hindsight
        if hindsight is None:
            self.feature.record(context.branch, output, context.x, context.order)
            return output
        prediction, replaced = _first_tensor(output)
        last = self.runtime.num_steps is None or context.step == self.runtime.num_steps - 1
        returned, kept = hindsight.full(context.branch, context.step, context.timestep, prediction, last)
        self.feature.record(context.branch, replaced(kept), context.x, context.order)
        return replaced(returned)


class PerModule(Granularity):
    """Each cached child of each block (attention, MLP, ...), as in the paper."""

    name = "module"

    def install(self, model: nn.Module, undo: list[Undo]) -> None:
        for path, module, skipped in cached_children(discover_blocks(model)):
            undo.append(self._skip(module) if skipped else self._cache(path, module))

    def _cache(self, path: str, module: nn.Module) -> Undo:
        """Forecast this child's output; its block runs the rest."""
        feature, runtime = self.runtime.new_feature(path), self.runtime

        def make(original: Forward) -> Forward:
            def forward(*args: Any, **kwargs: Any) -> Any:
                context = runtime.context
                if context is None:
                    return original(*args, **kwargs)
                if not context.full:
                    return feature.predict(context.branch, context.x)
                output = original(*args, **kwargs)
                feature.record(context.branch, output, context.x, context.order)
                return output

            return forward

        return wrap_forward(module, make)

    def _skip(self, module: nn.Module) -> Undo:
        """A child that only feeds a cached child: on forecast calls, zero placeholders of its output."""
        runtime = self.runtime
        templates: dict[int, tuple[list[Any], TreeSpec]] = {}  # branch -> (leaf shapes, structure)

        def make(original: Forward) -> Forward:
            def forward(*args: Any, **kwargs: Any) -> Any:
                context = runtime.context
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


def _residual_blocks(model: nn.Module, granularity: str) -> list[Block]:
    """The blocks, each returning the streams it takes (so that output - input is its update)."""
    blocks = discover_blocks(model)
    for block in blocks:
        if set(block.spec.outputs or ()) != set(block.spec.inputs):
            raise ValueError(
                f"{type(block.module).__name__} returns the streams {block.spec.outputs} but takes "
                f"{block.spec.inputs}: granularity {granularity!r} needs them to match"
            )
    return blocks


class PerBlock(Granularity):
    """Each block's residual update of each stream."""

    name = "block"

    def install(self, model: nn.Module, undo: list[Undo]) -> None:
        undo.extend(self._cache(block) for block in _residual_blocks(model, self.name))

    def _cache(self, block: Block) -> Undo:
        feature, runtime = self.runtime.new_feature(block.path), self.runtime

        def make(original: Forward) -> Forward:
            def forward(*args: Any, **kwargs: Any) -> Any:
                context = runtime.context
                if context is None:
                    return original(*args, **kwargs)
                inputs = stream_inputs(block, args, kwargs)
                if not context.full:
                    return assemble(block, advance(inputs, feature.predict(context.branch, context.x)))
                output = original(*args, **kwargs)
                update = updates(inputs, stream_outputs(block, output))
                feature.record(context.branch, update, context.x, context.order)
                return output

            return forward

        return wrap_forward(block.module, make)


class WholeStack(Granularity):
    """Skip every block and forecast the whole stack's residual update.

    On full calls the first block called notes the stack's input streams and each block its
    output; when the call ends, the last output minus the first input is recorded. On forecast
    calls every block passes its inputs through, and the block that came last on the previous
    full call adds the forecast update.
    """

    name = "stack"

    def install(self, model: nn.Module, undo: list[Undo]) -> None:
        self.feature = self.runtime.new_feature("stack")
        self.last_block: dict[int, str] = {}  # branch -> path of the block called last
        undo.extend(self._pass_through(block) for block in _residual_blocks(model, self.name))

    def finish(self, context: CallContext, output: Any) -> Any:
        first, (block, block_output) = context.scratch["stack_in"], context.scratch["stack_out"]
        last = stream_outputs(block, block_output)
        for name, value in first.items():  # e.g. HiDream appends tokens to its text stream per block
            if value is not None and last[name] is not None and value.shape != last[name].shape:
                raise StreamsChangeShape(
                    "granularity 'stack' needs each stream to keep its shape through the blocks; "
                    f"{name} goes from {tuple(value.shape)} to {tuple(last[name].shape)}: "
                    "use 'block' or 'model'"
                )
        self.feature.record(context.branch, updates(first, last), context.x, context.order)
        self.last_block[context.branch] = block.path
        return output

    def _pass_through(self, block: Block) -> Undo:
        runtime = self.runtime

        def make(original: Forward) -> Forward:
            def forward(*args: Any, **kwargs: Any) -> Any:
                context = runtime.context
                if context is None:
                    return original(*args, **kwargs)
                inputs = stream_inputs(block, args, kwargs)
                context.scratch.setdefault("stack_in", inputs)
                if context.full:
                    output = original(*args, **kwargs)
                    context.scratch["stack_out"] = (block, output)
                    return output
                if self.last_block.get(context.branch) == block.path:
                    inputs = advance(inputs, self.feature.predict(context.branch, context.x))
                return assemble(block, inputs)

            return forward

        return wrap_forward(block.module, make)


def _first_tensor(output: Any) -> tuple[Tensor, Callable[[Tensor], Any]]:
    """The first tensor of a model's output (a tensor, tuple or dataclass), and a function that
    gives the output back with another tensor in its place."""
    leaves, structure = tree_flatten(output)
    index = next(i for i, leaf in enumerate(leaves) if isinstance(leaf, Tensor))

    def replaced(tensor: Tensor) -> Any:
        return tree_unflatten([*leaves[:index], tensor, *leaves[index + 1 :]], structure)

    return leaves[index], replaced


GRANULARITIES: dict[str, type[Granularity]] = {
    strategy.name: strategy for strategy in (PerModule, PerBlock, WholeStack, ModelOutput)
}
