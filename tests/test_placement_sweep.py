"""`bench.placement_sweep`: placements of the paper's number of full steps, ranked by their choosers."""

import pytest

from taylorseer.bench import placement_sweep
from taylorseer.core.schedule import full_step_indices

pytestmark = pytest.mark.integration


def test_the_shipped_shape_is_measured_beside_the_spread_family(one_thread):
    rows = placement_sweep.measure("dit-digits", 1, 0, leading=(1,), densities=(1.5,), orders=(2,))
    by_label = {(row["steps"], row["interval"], row["placement"]) for row in rows}
    assert {
        (28, 3, "shipped diffusion shape, stretched"),
        (50, 7, "shipped diffusion shape, stretched"),
        (28, 5, "shipped flow shape, stretched"),
    } <= by_label
    assert (50, 7, "shipped flow shape, stretched") not in by_label  # flow ships none at interval 7
    assert len(rows) == 6 * 3 + 4  # (28, 50) steps x intervals (3, 5, 7) x (paper, spread, diffusion
    # shape), and the flow shapes of intervals 3 and 5
    for row in rows:
        assert row["budget"] == len(full_step_indices(row["steps"], row["interval"], 3))


def test_two_choosers_rank_by_their_worst_case():
    rows = [
        dict(model="a", placement="even", order=2, psnr=45.0),
        dict(model="b", placement="even", order=2, psnr=39.0),
        dict(model="a", placement="late", order=2, psnr=42.0),
        dict(model="b", placement="late", order=2, psnr=41.0),
    ]
    assert [entry[0] for entry in placement_sweep.ranking(rows, ("a", "b"))] == ["late", "even"]
    assert [entry[0] for entry in placement_sweep.ranking(rows, ("a",))] == ["even", "late"]
