"""`bench.margins`: ours and every peer at the same number of full steps, on a bundled model."""

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("cache_dit")

from taylorseer.bench import margins  # noqa: E402
from taylorseer.core.schedule import full_step_indices  # noqa: E402

pytestmark = pytest.mark.integration


def test_every_method_runs_the_papers_count_and_the_margin_is_ours_minus_the_best_peer(one_thread):
    rows = margins.measure("dit-digits", samples=1, seed=0)
    for steps, interval in margins.SETTINGS:
        group = [row for row in rows if row["steps"] == steps]
        assert len({row["method"] for row in group}) == len(group) >= 7  # ours, 3 peers x 2 orders
        assert {row["full_steps"] for row in group} == {len(full_step_indices(steps, interval, 3))}
    table = margins.markdown(rows, seconds=60, samples=1)
    ours = next(row for row in rows if row["steps"] == 28 and row["method"] == "ours: default")
    best = max((row for row in rows if row["steps"] == 28 and row is not ours), key=lambda row: row["psnr"])
    assert f"| {best['psnr']:.2f} | {ours['psnr'] - best['psnr']:+.2f} |" in table
