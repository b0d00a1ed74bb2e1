"""Replacing a method on one instance (a module's forward, a scheduler's step), and giving it back."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn

Forward = Callable[..., Any]
Undo = Callable[[], None]


def is_wrapped(target: object, name: str = "forward") -> bool:
    return getattr(vars(target).get(name), "_taylorseer", False)


def wrap_method(target: object, name: str, make: Callable[[Forward], Forward]) -> Undo:
    """Replace `target.<name>` on this instance only; the returned function restores it."""
    previous = vars(target).get(name)  # another library's instance hook, if any
    original = getattr(target, name)
    wrapper = functools.wraps(original)(make(original))
    wrapper._taylorseer = True
    setattr(target, name, wrapper)

    def undo() -> None:
        if previous is None:
            delattr(target, name)
        else:
            setattr(target, name, previous)

    return undo


def wrap_forward(module: nn.Module, make: Callable[[Forward], Forward]) -> Undo:
    """Replace `module.forward` on this instance only; the returned function restores it."""
    return wrap_method(module, "forward", make)
