"""`bench.placement_sweep`: placements of the paper's number of full steps, ranked by their choosers."""

import pytest

from taylorseer.bench import placement_sweep
from taylorseer.core.schedule import full_step_indices

pytestmark = pytest.mark.integration


def test_each_kinds_shipped_placement_is_measured_beside_the_spread_family(one_thread):
    rows = placement_sweep.measure("dit-digits", 1, 0, leading=(1,), densities=(1.75,), orders=(2,))
    shipped = {row["placement"]: row["psnr"] for row in rows if (row["steps"], row["interval"]) == (50, 7)}
    assert len(rows) == 6 * 5  # (28, 50) steps x intervals (3, 5, 7) x (paper, spread, each kind's shipped)
    # flow ships a shape of its own at interval 7, not the spread measured beside it
    assert shipped["shipped flow placement"] not in (
        shipped["spread leading 1 density 1.75"],
        shipped["paper"],
    )
    assert shipped["shipped diffusion placement"] != shipped["paper"]
    assert shipped["shipped unknown-sampler placement"] == shipped["shipped diffusion placement"]  # shapes
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
