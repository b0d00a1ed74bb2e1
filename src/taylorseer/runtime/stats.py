"""What a run did, as a typed object: `handle.stats` is built from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class RunStats:
    """Counts of one run. A step counts once (its first guidance branch); a call counts per branch."""

    full_steps: int = 0
    forecast_steps: int = 0
    full_calls: int = 0
    forecast_calls: int = 0
    nonfinite_fallbacks: int = 0  # forecasts that overflowed and were computed in full instead
    probe_refreshes: int = 0  # adaptive: forecast calls the probe turned full

    def count_call(self, full: bool, branch: int) -> None:
        if full:
            self.full_calls += 1
            self.full_steps += branch == 0
        else:
            self.forecast_calls += 1
            self.forecast_steps += branch == 0

    def turn_full(self, branch: int, reason: str) -> None:
        """A forecast call that ran in full after all, for `reason` (a counter's name)."""
        setattr(self, reason, getattr(self, reason) + 1)
        self.forecast_calls -= 1
        self.full_calls += 1
        if branch == 0:
            self.forecast_steps -= 1
            self.full_steps += 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
