"""Finding what to cache: the repeated block lists, their cached children, the timestep input."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from taylorseer.wiring.families import (
    BLOCK_SPECS,
    DEFAULT_CACHED_CHILDREN,
    IGNORED_BLOCKS,
    WRAPPED_BLOCKS,
    BlockSpec,
)

TIMESTEP_ARGUMENTS = ("timestep", "t", "timesteps")  # diffusers, DiT-style models, HiDream


@dataclass(frozen=True)
class Argument:
    """Where a forward argument arrives: by keyword `name`, or at positional `index`."""

    name: str
    index: int | None

    def get(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.name in kwargs:
            return kwargs[self.name]
        if self.index is not None and self.index < len(args):
            return args[self.index]
        return None


def forward_argument(module: nn.Module, names: tuple[str, ...]) -> Argument | None:
    """The first of `names` that `module.forward` accepts, with its positional index."""
    parameters = list(inspect.signature(module.forward).parameters.values())
    for name in names:
        for index, parameter in enumerate(parameters):
            if parameter.name == name:
                positional = parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
                return Argument(name, index if positional else None)
    return None


def timestep_argument(model: nn.Module) -> Argument:
    argument = forward_argument(model, TIMESTEP_ARGUMENTS)
    if argument is None:
        raise ValueError(
            f"{type(model).__name__}.forward takes none of the arguments {TIMESTEP_ARGUMENTS}: "
            "the cache reads the sampling step from the timestep input"
        )
    return argument


def _is_block_list(module: nn.Module) -> bool:
    """An nn.ModuleList of same-class blocks that themselves have children."""
    if not isinstance(module, nn.ModuleList) or len(module) == 0:
        return False
    block_type = type(module[0])
    if isinstance(module[0], (nn.ModuleList, nn.Sequential)) or block_type.__name__ in IGNORED_BLOCKS:
        return False
    return all(type(block) is block_type for block in module) and any(True for _ in module[0].children())


def find_block_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """(path, list) of every block list, in registration order, not looking inside blocks."""
    found: list[tuple[str, nn.ModuleList]] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if _is_block_list(child):
                found.append((path, child))
            else:
                visit(path, child)

    visit("", model)
    return found


def block_spec(block: nn.Module) -> BlockSpec:
    """The family table's entry for this block's class, or one discovered from its children."""
    spec = BLOCK_SPECS.get(type(block).__name__)
    if spec is None:
        children = dict(block.named_children())
        cached = tuple(name for name in DEFAULT_CACHED_CHILDREN if name in children)
        first = next(iter(inspect.signature(block.forward).parameters), "hidden_states")
        spec = BlockSpec(cached=cached, inputs=(first,))
    return spec if spec.outputs is not None else replace(spec, outputs=(spec.inputs[0],))


@dataclass(frozen=True)
class Block:
    """One block to hook: its path, the module, its spec and where its stream inputs arrive."""

    path: str
    module: nn.Module
    spec: BlockSpec
    inputs: tuple[Argument, ...]


def discover_blocks(model: nn.Module) -> list[Block]:
    """Every block of every block list, in registration order; raises when there are none."""
    lists = find_block_lists(model)
    if not lists:
        raise ValueError(
            f"no block list found in {type(model).__name__}: looked for an nn.ModuleList of "
            "same-class blocks (e.g. `blocks`, `transformer_blocks`); use granularity='model', or "
            "teach it your blocks with taylorseer.register_block_spec"
        )
    blocks = []
    for path_of_list, module_list in lists:
        for index, module in enumerate(module_list):
            path = f"{path_of_list}.{index}"
            if type(module).__name__ in WRAPPED_BLOCKS:  # hook the real block inside the wrapper
                inner = WRAPPED_BLOCKS[type(module).__name__]
                module, path = module.get_submodule(inner), f"{path}.{inner}"
            spec = block_spec(module)
            inputs = []
            for name in spec.inputs:
                argument = forward_argument(module, (name,))
                if argument is None:
                    raise ValueError(f"{type(module).__name__}.forward has no argument {name!r}")
                inputs.append(argument)
            blocks.append(Block(path, module, spec, tuple(inputs)))
    return blocks


def cached_children(blocks: list[Block]) -> list[tuple[str, nn.Module, bool]]:
    """(path, module, skipped) for the children cached ("module" granularity); raises on none."""
    children = []
    for block in blocks:
        named = dict(block.module.named_children())
        for name in block.spec.cached + block.spec.skipped:
            if name not in named:
                raise ValueError(f"{type(block.module).__name__} at {block.path} has no child {name!r}")
            children.append((f"{block.path}.{name}", named[name], name in block.spec.skipped))
        children += [
            (f"{block.path}.{name}", named[name], False) for name in block.spec.optional if name in named
        ]
    if not any(not skipped for _, _, skipped in children):
        classes = sorted({type(block.module).__name__ for block in blocks})
        raise ValueError(
            f"no module to cache inside the blocks {classes}: looked for the children "
            f"{DEFAULT_CACHED_CHILDREN}: teach it these blocks with taylorseer.register_block_spec"
        )
    return children


def context_parallel_group(model: nn.Module) -> Any:
    """The process group over which diffusers' context parallelism splits `model`'s tokens, or None."""
    parallel = getattr(model, "_parallel_config", None)
    mesh = getattr(getattr(parallel, "context_parallel_config", None), "_flattened_mesh", None)
    return None if mesh is None else mesh.get_group()
