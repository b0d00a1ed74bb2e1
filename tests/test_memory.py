"""The on-paper cache size formula against the engine's measured cache_bytes on a tiny FLUX."""

import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import FluxTransformer2DModel  # noqa: E402

from taylorseer import TaylorSeerConfig, apply_taylorseer  # noqa: E402
from taylorseer.bench.memory_table import (  # noqa: E402
    FLUX_DEV_1024,
    Architecture,
    cache_bytes,
    factor_elements,
    table,
)  # noqa: E402

pytestmark = pytest.mark.integration

BATCH, IMAGE, TEXT, HIDDEN, CHANNELS = 2, 16, 8, 32, 8


@pytest.mark.parametrize("granularity", ["module", "block", "stack", "model"])
@pytest.mark.parametrize("order", [1, 2])
def test_formula_matches_the_measured_cache(granularity, order):
    torch.manual_seed(0)
    model = FluxTransformer2DModel(
        patch_size=1, in_channels=CHANNELS, num_layers=2, num_single_layers=3, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=16, axes_dims_rope=(4, 6, 6),
    )  # fmt: skip
    arch = Architecture("tiny", 2, 3, HIDDEN, CHANNELS, IMAGE, TEXT, "test")
    inputs = dict(
        hidden_states=torch.randn(BATCH, IMAGE, CHANNELS),
        encoder_hidden_states=torch.randn(BATCH, TEXT, 16),
        pooled_projections=torch.randn(BATCH, 16),
        img_ids=torch.zeros(IMAGE, 3),
        txt_ids=torch.zeros(TEXT, 3),
    )
    with (
        torch.no_grad(),
        apply_taylorseer(model, TaylorSeerConfig(interval=1, order=order, granularity=granularity)) as h,
    ):
        for t in (1.0, 0.9, 0.8, 0.7):
            model(timestep=torch.full((BATCH,), t), **inputs)
        expected = cache_bytes(arch, granularity, order, batch=BATCH, itemsize=4)
        if granularity == "model":  # and the hindsight correction's three outputs, in float32
            expected += 3 * factor_elements(arch, "model") * BATCH * 4
        assert h.stats["cache_bytes"] == expected


def test_flux_dev_table_reproduces_the_known_size():
    # ~4 GiB of per-module factors for FLUX.1-dev at 1024^2, order 1, bfloat16 (shared/ALGORITHM.md)
    assert 3.9 < cache_bytes(FLUX_DEV_1024, "module", 1) / 2**30 < 4.1
    assert cache_bytes(FLUX_DEV_1024, "model", 1) / cache_bytes(FLUX_DEV_1024, "module", 1) < 1e-3
    assert "FLUX.1-dev" in table([FLUX_DEV_1024])
