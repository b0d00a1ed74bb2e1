"""Internal: the runtime of an applied cache — one place that decides, per model call, which step
and guidance branch it is and whether it runs in full or is forecast (`calls.Runtime`)."""
