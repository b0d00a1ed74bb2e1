"""Which sampling steps run the model in full: pure functions of the step index."""

from __future__ import annotations

from collections.abc import Sequence


def official_is_full(step: int, interval: int, warmup: int) -> bool:
    """The official code's rule: `warmup` full steps, then every `interval`-th step.

    Its counter of forecast steps restarts at each full step, so after the last warm-up step
    (warmup - 1) the full steps fall at warmup - 1 + interval, warmup - 1 + 2 * interval, ...
    """
    return step < warmup or (step - (warmup - 1)) % interval == 0


def is_full_step(
    step: int,
    interval: int,
    warmup: int,
    final_full: int = 0,
    num_steps: int | None = None,
    full_steps: Sequence[int] | None = None,
) -> bool:
    """Whether 0-based `step` runs in full.

    `full_steps`, when given, is the whole schedule (negative entries count from the end).
    Otherwise the official rule, plus the last `final_full` steps. Entries that refer to the end
    need `num_steps`.
    """
    if full_steps is not None:
        if num_steps is not None:
            return step in {s % num_steps for s in full_steps}
        if any(s < 0 for s in full_steps):
            raise ValueError(f"full_steps {tuple(full_steps)} counts from the end: num_steps is needed")
        return step in full_steps
    if final_full > 0:
        if num_steps is None:
            raise ValueError(f"final_full={final_full} needs num_steps, the length of the run")
        if step >= num_steps - final_full:
            return True
    return official_is_full(step, interval, warmup)


def full_step_indices(
    num_steps: int,
    interval: int,
    warmup: int,
    final_full: int = 0,
    full_steps: Sequence[int] | None = None,
) -> list[int]:
    """All full steps of a run of `num_steps` steps, in sampling order."""
    return [
        step
        for step in range(num_steps)
        if is_full_step(step, interval, warmup, final_full, num_steps, full_steps)
    ]


def spread(num_steps: int, budget: int, leading: int, density: float = 1.0) -> list[int]:
    """`budget` full steps: the first `leading`, the rest spread up to the last step.

    `density` 1 spaces the rest evenly; above 1 the gaps shrink toward the end of the run
    (position = 1 - (1 - u) ** density of the remaining span, for u evenly spaced in (0, 1]).
    """
    if not 1 <= leading <= budget <= num_steps:
        raise ValueError(f"need 1 <= leading ({leading}) <= budget ({budget}) <= num_steps ({num_steps})")
    if density < 1:
        raise ValueError(f"density must be >= 1, got {density}")
    rest = budget - leading
    span = num_steps - leading  # positions leading .. num_steps - 1
    steps = list(range(leading))
    for k in range(1, rest + 1):
        position = leading - 1 + round(span * (1 - (1 - k / rest) ** density))
        lowest, highest = steps[-1] + 1, num_steps - 1 - (rest - k)  # keep room for the others
        steps.append(min(max(position, lowest), highest))
    return steps


def stretched(num_steps: int, budget: int, fractions: Sequence[float]) -> list[int]:
    """`budget` full steps along a reference placement of any length and step count.

    `fractions` are the reference's full steps as fractions of its run (0 = first step, 1 = last),
    increasing; the k-th of `budget` steps goes where the reference has placed that share of its
    full steps (linear interpolation), rounded, at least one step after the previous one and
    leaving room for the rest. With as many steps as the reference it gives the reference back.
    """
    if not 1 <= budget <= num_steps:
        raise ValueError(f"need 1 <= budget ({budget}) <= num_steps ({num_steps})")
    ordered = list(fractions) == sorted(fractions) and 0 <= fractions[0] <= fractions[-1] <= 1
    if len(fractions) < 2 or not ordered:
        raise ValueError(f"fractions must increase within [0, 1], at least two; got {tuple(fractions)}")
    last = len(fractions) - 1
    steps: list[int] = []
    for k in range(budget):
        share = k * last / max(budget - 1, 1)  # position in the reference's list, fractional
        below = min(int(share), last - 1)
        fraction = fractions[below] + (share - below) * (fractions[below + 1] - fractions[below])
        lowest = steps[-1] + 1 if steps else 0
        highest = num_steps - (budget - k)  # keep room for the others
        steps.append(min(max(round(fraction * (num_steps - 1)), lowest), highest))
    return steps
