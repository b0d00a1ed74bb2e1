"""Internal: the pure core of the cache (forecast math, schedules, the step clock, factors, the
memory budget). Nothing here knows about modules, hooks or models; each piece is unit-tested."""
