"""Internal: `taylorseer bench` — every method side by side on the same seeds (`runner`, `harness`,
`subjects`, `peers`, `report`, `metrics`), and the generators of the docs' tables
(`memory_table`, `defaults_sweep`)."""
