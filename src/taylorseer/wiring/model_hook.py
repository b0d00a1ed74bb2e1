"""The wrapper of the top-level model: one model call from its timestep to its output.

timestep in -> Runtime.begin (step, branch, full or forecast)
  forecast: Granularity.forecast -> Runtime.accept_forecast -> output, or on to a full run
  full:     Installation.run_full (the model's forward, recorded; a leaner granularity if the
            memory budget is exceeded)
-> Runtime.end
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor, nn

from taylorseer.runtime.calls import CallContext, InputSignature, Runtime
from taylorseer.wiring.discovery import Argument
from taylorseer.wiring.forwards import Forward, Undo, wrap_forward
from taylorseer.wiring.granularities import Granularity


class Installation(Protocol):
    """What the api installed: the current granularity, and how a full call runs."""

    strategy: Granularity

    def run_full(self, context: CallContext, run_model: Callable[[], Any]) -> Any: ...


def timestep_value(value: Any, argument: Argument) -> float:
    """The call's timestep as a host float (one scalar leaves the device)."""
    if value is None:
        raise ValueError(f"the model was called without its {argument.name!r} input")
    if isinstance(value, Tensor):
        # the largest: per-token timesteps give conditioning tokens 0
        return float(value.max())
    return float(value)


def input_signature(args: tuple[Any, ...], kwargs: dict[str, Any]) -> InputSignature:
    """Shapes, dtypes and devices of the tensor inputs."""
    named = list(enumerate(args)) + sorted(kwargs.items())
    return tuple(
        (key, tuple(value.shape), value.dtype, value.device)
        for key, value in named
        if isinstance(value, Tensor)
    )


def hook_model(model: nn.Module, timestep: Argument, runtime: Runtime, installation: Installation) -> Undo:
    """Wrap the model's forward: every call is placed in the run, then forecast or run in full."""

    def make(original: Forward) -> Forward:
        def forward(*args: Any, **kwargs: Any) -> Any:
            context = runtime.begin(
                timestep_value(timestep.get(args, kwargs), timestep), input_signature(args, kwargs)
            )

            def run_model() -> Any:
                return original(*args, **kwargs)

            succeeded = False
            try:
                output = None
                if not context.full:
                    output = installation.strategy.forecast(context, run_model)
                if context.full or not runtime.accept_forecast(context, output, run_model):
                    output = installation.run_full(context, run_model)
                succeeded = True
                return output
            finally:
                runtime.end(succeeded)

        return forward

    return wrap_forward(model, make)
