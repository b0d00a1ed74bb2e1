"""Forecasting math: pure functions on tensors, no modules and no configs.

A cached feature is summarised by `factors` c_0..c_k (newest first, all shaped like the feature)
and the abscissae x_0..x_k of the full steps they were built from (x_0 the newest).

Two forms share that layout:

* newton — c_j = f[x_0, ..., x_j], the divided differences on the real abscissae, evaluated as
  P(x) = c_0 + c_1 (x - x_0) + c_2 (x - x_0)(x - x_1) + ...  Exact for polynomials of degree
  <= k on any grid, increasing or decreasing.
* taylor — the paper's form (TaylorSeer, arXiv 2503.06923, eq. 6-7): c_{j+1} = (c_j^new - c_j^old)
  / (x_0 - x_1), every order divided by the latest distance, evaluated as sum c_j (x - x_0)^j / j!.
  Exact for degree <= 1 on a uniform grid only; kept bit-for-bit for the `official` preset.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def update_factors(
    factors: list[Tensor],
    abscissae: list[float],
    feature: Tensor,
    x: float,
    order: int,
    form: str,
    storage_dtype: torch.dtype | None = None,
) -> tuple[list[Tensor], list[float]]:
    """New (factors, abscissae) after a full step that produced `feature` at abscissa `x`.

    Keeps at most order + 1 factors; the order grows by one per full step until then. The
    differences are formed in at least float32 and stored in `storage_dtype` (default: the
    feature's dtype).
    """
    if factors and x == abscissae[0]:
        raise ValueError(f"a full step at abscissa {x} repeats the previous one")
    compute_dtype = torch.promote_types(feature.dtype, torch.float32)
    storage_dtype = storage_dtype or feature.dtype
    new = [feature.to(compute_dtype)]
    for j in range(min(order, len(factors))):
        distance = x - (abscissae[0] if form == "taylor" else abscissae[j])
        new.append((new[j] - factors[j].to(compute_dtype)) / distance)
    return [f.to(storage_dtype) for f in new], [x, *abscissae[:order]]


def forecast_weights(abscissae: list[float], num_factors: int, x: float, form: str) -> list[float]:
    """Weights w_j with prediction = sum_j w_j c_j (host floats: no device sync)."""
    offset = x - abscissae[0]
    if form == "taylor":
        return [offset**j / math.factorial(j) for j in range(num_factors)]
    weights, product = [], 1.0
    for j in range(num_factors):
        weights.append(product)
        product *= x - abscissae[j]
    return weights


def usable_factors(abscissae: list[float], x: float, gap_ratio: float | None) -> int:
    """How many factors a forecast at `x` uses: all, or (with `gap_ratio`) c_0..c_j for the largest
    j whose points x_0..x_j span at least |x - x_0| / gap_ratio — a derivative is not extrapolated
    much farther than the steps it was measured over (c_0 alone, reuse, is always allowed)."""
    if gap_ratio is None:
        return len(abscissae)
    reach = abs(x - abscissae[0])
    count = 1
    while count < len(abscissae) and reach <= gap_ratio * abs(abscissae[0] - abscissae[count]):
        count += 1
    return count


def predict(
    factors: list[Tensor],
    abscissae: list[float],
    x: float,
    form: str,
    dtype: torch.dtype | None = None,
    gap_ratio: float | None = None,
    term_ratio: float | None = None,
    group: Any = None,
) -> Tensor:
    """The feature forecast at abscissa `x` from its factors, in `dtype` (default: the factors'),
    truncated by `usable_factors` when `gap_ratio` is given.

    With `term_ratio`, the series also stops at the first term w_j c_j (j >= 2) whose norm exceeds
    `term_ratio` times the previous term's: a growing term says the expansion no longer converges
    that far from x_0 (the usual truncation of an asymptotic series). Decided on the device, per
    tensor, without a host sync. With a process `group` whose ranks each hold a shard of the
    feature (context parallelism), the norms are those of the whole feature (squares summed over
    the group), so that every rank cuts where one process would."""
    factors = factors[: usable_factors(abscissae, x, gap_ratio)]
    weights = forecast_weights(abscissae, len(factors), x, form)
    out = factors[0].to(dtype or factors[0].dtype, copy=True)
    if term_ratio is None or len(factors) < 3:  # no term of order 2 or more to weigh
        for weight, factor in zip(weights[1:], factors[1:]):
            out.add_(factor.to(out.dtype), alpha=weight)
        return out
    terms = [factor.to(out.dtype) * weight for weight, factor in zip(weights[1:], factors[1:])]
    out.add_(terms[0])
    norms = _norms(terms, group)  # (len(terms),)
    kept = torch.ones((), dtype=torch.bool, device=out.device)
    for j, term in enumerate(terms[1:], start=1):
        kept = kept & (norms[j] <= term_ratio * norms[j - 1])
        out.add_(term * kept)
    return out


def _norms(tensors: list[Tensor], group: Any = None) -> Tensor:
    """(len(tensors),) L2 norms in at least float32 (no overflow for half-precision features); with
    a process `group`, of the tensors that the group's shards make together."""
    dtype = torch.promote_types(tensors[0].dtype, torch.float32)
    if group is None:
        return torch.stack([torch.linalg.vector_norm(t, dtype=dtype) for t in tensors])
    squares = torch.stack([torch.sum(t.to(dtype) ** 2) for t in tensors])
    torch.distributed.all_reduce(squares, group=group)
    return squares.sqrt()
