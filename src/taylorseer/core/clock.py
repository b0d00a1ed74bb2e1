"""Step clocks: where a model call falls in a sampling run (run, step, guidance branch).

Two ways to know it:
- `TimestepClock` reads it from the timestep values alone (bare models in a loop of your own):
  a new value is the next step, the same value again another branch of the same step, a value
  that moves back toward the start of the schedule begins a new run. Values that repeat within a
  run (bf16 rounding, some solvers) are taken for branches; `explicit` runs (`handle.run()`)
  refuse a jump back instead of guessing.
- `SchedulerClock` is driven by a diffusers scheduler: `start` when `set_timesteps` is called,
  `advance` after each `step()`; the calls in between are that step's branches.

Both share `run` (a counter: a new value means a new run), `step`, `branch` and `num_steps`
(the run's length when known).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TimestepClock:
    """Turns the timestep of each model call into (step, branch) without counting calls."""

    run: int = 0
    step: int = -1
    branch: int = 0
    num_steps: int | None = None  # set for an explicit run
    explicit: bool = False  # inside `handle.run()`: a jump back is an error, not a new run
    timestep: float | None = None
    direction: float = 0.0  # sign of the timestep's change between steps; 0 until known

    def tick(self, timestep: float) -> None:
        """Place the call at `timestep`."""
        if self.timestep is None:
            self._start(timestep)
            return
        change = timestep - self.timestep
        if change == 0:
            self.branch += 1
        elif self.direction == 0 or change * self.direction > 0:
            self.direction = 1.0 if change > 0 else -1.0
            self.step, self.branch, self.timestep = self.step + 1, 0, timestep
        elif self.explicit:
            raise ValueError(
                f"the timestep moved back from {self.timestep} to {timestep} inside handle.run(): "
                "give each sampling loop its own run"
            )
        else:
            self._start(timestep)

    @property
    def steps(self) -> int:
        """Steps the current run has reached so far."""
        return self.step + 1

    def restart(self, num_steps: int | None = None, explicit: bool = False) -> None:
        """The next call starts a new run (of `num_steps` steps when known)."""
        self.timestep, self.num_steps, self.explicit = None, num_steps, explicit
        self.step, self.branch = -1, 0

    def _start(self, timestep: float) -> None:
        self.run += 1
        self.step, self.branch, self.timestep, self.direction = 0, 0, timestep, 0.0


@dataclass
class SchedulerClock:
    """The run structure as a diffusers scheduler sees it; timestep values are not read."""

    count_steps: Callable[[], int | None]  # model evaluations per branch of the run just set up
    run: int = 0
    step: int = -1
    branch: int = 0
    num_steps: int | None = None
    pending: bool = False  # set_timesteps was called: the next model call opens a run
    calls_in_step: int = 0
    steps: int = 0  # steps of the current run that called the model so far

    def start(self) -> None:
        """`set_timesteps` was called: a new run begins with the next model call."""
        self.pending = True

    def advance(self) -> None:
        """`step()` returned: the next model call belongs to the next step."""
        self.step += 1
        self.calls_in_step = 0

    def tick(self, timestep: float) -> None:
        """Place a model call: the first after `start` opens the run and reads its length (only
        now: img2img pipelines set the scheduler's begin index after set_timesteps)."""
        if self.pending or self.run == 0:
            self.pending = False
            self.run += 1
            self.step, self.calls_in_step = 0, 0
            self.num_steps = self.count_steps()
        self.branch = self.calls_in_step
        self.calls_in_step += 1
        self.steps = self.step + 1

    def restart(self, num_steps: int | None = None, explicit: bool = False) -> None:
        """Runs follow the scheduler: nothing to do (a new run starts at its next set_timesteps)."""
