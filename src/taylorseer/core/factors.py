"""The factors of each cached feature, per CFG branch: folded on full steps, evaluated on forecasts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import TreeSpec, tree_flatten, tree_unflatten

from taylorseer.core import forecast
from taylorseer.core.budget import MemoryBudget

_TENSOR = object()  # placeholder for a tensor leaf in an output template


@dataclass
class FeatureFactors:
    """Factors of the tensors of one cached output, for one CFG branch (newest first)."""

    factors: list[list[Tensor]] = field(default_factory=list)  # per tensor: c_0..c_k
    abscissae: list[float] = field(default_factory=list)  # x_0..x_k, shared by all tensors
    dtypes: list[torch.dtype] = field(default_factory=list)  # dtype of each tensor as produced
    structure: TreeSpec | None = None  # how the tensors nest in the output (tuple, dataclass, ...)
    template: list[Any] = field(default_factory=list)  # the output's leaves, _TENSOR for each tensor

    @property
    def shapes(self) -> list[torch.Size]:
        return [per_tensor[0].shape for per_tensor in self.factors]

    @property
    def nbytes(self) -> int:
        return sum(f.numel() * f.element_size() for per_tensor in self.factors for f in per_tensor)


@dataclass(frozen=True)
class ForecastRule:
    """The parts of the config that the math needs."""

    form: str
    order: int
    storage_dtype: torch.dtype | None
    gap_ratio: float | None = None  # see forecast.usable_factors
    term_ratio: float | None = None  # see forecast.predict
    group: Any = None  # ranks that each hold a shard of every feature (see forecast.predict)


class PerBranch:
    """State kept per CFG branch in `branches` (branch -> something with `nbytes`)."""

    branches: dict[int, Any]

    def drop(self, branch: int | None = None) -> None:
        if branch is None:
            self.branches.clear()
        else:
            self.branches.pop(branch, None)

    @property
    def nbytes(self) -> int:
        return sum(state.nbytes for state in self.branches.values())


class CachedFeature(PerBranch):
    """One cached unit (a module, block, the stack or the model), with factors per CFG branch."""

    def __init__(self, path: str, rule: ForecastRule, budget: MemoryBudget) -> None:
        self.path = path
        self.rule = rule
        self.budget = budget
        self.branches: dict[int, FeatureFactors] = {}

    def record(self, branch: int, output: Any, x: float, order: int) -> None:
        """Fold a full step's output (a tensor or a tuple/dataclass of them) taken at abscissa `x`."""
        leaves, structure = tree_flatten(output)
        tensors = [leaf.detach() for leaf in leaves if isinstance(leaf, Tensor)]
        itemsize = self.rule.storage_dtype.itemsize if self.rule.storage_dtype else None
        full_order_bytes = (self.rule.order + 1) * sum(
            t.numel() * (itemsize or t.element_size()) for t in tensors
        )
        self.budget.reserve((id(self), branch), full_order_bytes)
        old = self.branches.get(branch)
        if old is None or old.structure != structure or old.shapes != [t.shape for t in tensors]:
            old = FeatureFactors()  # first full step, or the output's structure changed
        template = [_TENSOR if isinstance(leaf, Tensor) else leaf for leaf in leaves]
        new = FeatureFactors(structure=structure, template=template, dtypes=[t.dtype for t in tensors])
        for index, tensor in enumerate(tensors):
            previous = old.factors[index] if old.factors else []
            factors, new.abscissae = forecast.update_factors(
                previous, old.abscissae, tensor, x, order, self.rule.form, self.rule.storage_dtype
            )
            new.factors.append(factors)
        self.branches[branch] = new

    def predict(self, branch: int, x: float) -> Any:
        """The branch's output forecast at abscissa `x`, in its structure and dtypes."""
        state = self.branches[branch]
        rule = self.rule
        options = dict(gap_ratio=rule.gap_ratio, term_ratio=rule.term_ratio, group=rule.group)
        tensors = iter(
            forecast.predict(factors, state.abscissae, x, rule.form, dtype, **options)
            for factors, dtype in zip(state.factors, state.dtypes)
        )
        leaves = [next(tensors) if leaf is _TENSOR else leaf for leaf in state.template]
        return tree_unflatten(leaves, state.structure)

    def has(self, branch: int) -> bool:
        return branch in self.branches
