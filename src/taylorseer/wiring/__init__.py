"""Internal: the wiring — per-instance forward wrappers (`forwards`, `model_hook`), one strategy per
granularity that installs and undoes them (`granularities`), and what to hook (`discovery`, with
the per-family tables of `families`)."""
