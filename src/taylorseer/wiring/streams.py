"""A block's residual streams: read from its arguments and output, updated, put back together."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from taylorseer.wiring.discovery import Block

Streams = dict[str, Tensor | None]  # stream name -> value (None where the block returns none)


def stream_inputs(block: Block, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Streams:
    return {arg.name: arg.get(args, kwargs) for arg in block.inputs}


def stream_outputs(block: Block, output: Any) -> Streams:
    outputs = block.spec.outputs or ()
    values = output if isinstance(output, (tuple, list)) else (output,)
    if len(values) != len(outputs):
        raise ValueError(
            f"{type(block.module).__name__} at {block.path} returned {len(values)} values; "
            f"its BlockSpec expects the streams {outputs}"
        )
    return dict(zip(outputs, values))


def updates(inputs: Streams, outputs: Streams) -> Streams:
    """Each stream's residual update, output - input; None where the block returns no stream."""
    return {
        name: None if outputs[name] is None or value is None else outputs[name] - value
        for name, value in inputs.items()
    }


def advance(inputs: Streams, forecast_updates: Streams) -> Streams:
    """The forecast streams: each input plus its forecast update (None stays None)."""
    return {
        name: None if forecast_updates[name] is None else value + forecast_updates[name]
        for name, value in inputs.items()
    }


def assemble(block: Block, streams: Streams) -> Any:
    """The block's output built from stream values, in the order the block returns them."""
    outputs = block.spec.outputs or ()
    return streams[outputs[0]] if len(outputs) == 1 else tuple(streams[name] for name in outputs)
