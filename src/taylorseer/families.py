"""Per-family knowledge as data: how the engine sees each known class of transformer block.

Blocks of classes not listed here are handled by discovery with `DEFAULT_CACHED_CHILDREN` and a
single residual stream (the block's first argument, returned as one tensor).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BlockSpec:
    """How one block class is cached.

    cached:  children whose outputs are forecast at granularity "module" (taken before the
             block's adaLN gate and residual add, which still run with the current timestep).
    skipped: children whose outputs only feed a cached child; on forecast steps they are not run
             and return a zero placeholder of their last shape.
    inputs:  names of the forward arguments that carry residual streams.
    outputs: the stream returned at each position of the block's output tuple; None when the
             block returns one tensor, the stream inputs[0].
    """

    cached: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ("hidden_states",)
    outputs: tuple[str, ...] | None = None


# Children discovered inside unknown blocks, in the order they are looked for.
DEFAULT_CACHED_CHILDREN = (
    "attn", "attn1", "attn2", "self_attn", "cross_attn", "attn_context",
    "mlp", "ff", "ff_context", "ffn",
)  # fmt: skip

_FLUX_STREAMS = dict(
    inputs=("hidden_states", "encoder_hidden_states"),
    outputs=("encoder_hidden_states", "hidden_states"),
)

BLOCK_SPECS: dict[str, BlockSpec] = {
    # taylorseer.models.dit (facebookresearch/DiT layout): attention and MLP of each block.
    "DiTBlock": BlockSpec(cached=("attn", "mlp"), inputs=("x",)),
    # FLUX double-stream block: joint attention returns (image, text) outputs; two MLPs.
    "FluxTransformerBlock": BlockSpec(cached=("attn", "ff", "ff_context"), **_FLUX_STREAMS),
    # FLUX single-stream block: attention and MLP feed one linear; its output is what is cached.
    "FluxSingleTransformerBlock": BlockSpec(
        cached=("proj_out",), skipped=("attn", "proj_mlp", "act_mlp"), **_FLUX_STREAMS
    ),
}
