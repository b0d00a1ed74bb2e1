"""The memory budget of the cached factors: bytes reserved before they are allocated."""

from __future__ import annotations

from dataclasses import dataclass, field


class BudgetExceeded(Exception):
    """Raised before storing factors that would take the cache over its memory budget."""

    def __init__(self, needed: int, limit: int) -> None:
        super().__init__(f"the cache needs {needed} bytes, over its budget of {limit}")
        self.needed, self.limit = needed, limit


@dataclass
class MemoryBudget:
    """Bytes reserved per (cached unit, branch) at full order, checked before allocating."""

    limit: int | None
    reserved: dict[tuple[int, int], int] = field(default_factory=dict)

    def reserve(self, key: tuple[int, int], nbytes: int) -> None:
        """Reserve `nbytes` for `key` (replacing its previous reservation), or raise BudgetExceeded."""
        if self.limit is None:
            return
        needed = sum(v for k, v in self.reserved.items() if k != key) + nbytes
        if needed > self.limit:
            raise BudgetExceeded(needed, self.limit)
        self.reserved[key] = nbytes

    def release(self, branch: int | None = None) -> None:
        """Free the reservations of one CFG branch, or of all (None)."""
        self.reserved = {k: v for k, v in self.reserved.items() if branch is not None and k[1] != branch}
