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
    optional: children cached like `cached` where the block has them (some blocks of a class
              set them to None).
    inputs:  names of the forward arguments that carry residual streams.
    outputs: the stream returned at each position of the block's output tuple; None when the
             block returns one tensor, the stream inputs[0].
    """

    cached: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ("hidden_states",)
    outputs: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("cached", "skipped", "optional", "inputs", "outputs"):
            value = getattr(self, name)
            if value is None and name == "outputs":
                continue
            if isinstance(value, str) or not all(isinstance(item, str) for item in value):
                raise ValueError(f"BlockSpec.{name} must be a tuple of names, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not self.inputs:
            raise ValueError("BlockSpec.inputs must name at least one stream argument")


# Children discovered inside unknown blocks, in the order they are looked for.
DEFAULT_CACHED_CHILDREN = (
    "attn", "attn1", "attn2", "self_attn", "cross_attn", "attn_context",
    "mlp", "ff", "ff_context", "ffn",
)  # fmt: skip

_FLUX_STREAMS = dict(
    inputs=("hidden_states", "encoder_hidden_states"),
    outputs=("encoder_hidden_states", "hidden_states"),
)
# Dual-stream blocks that return (hidden_states, encoder_hidden_states), image stream first.
_IMAGE_FIRST_STREAMS = dict(
    inputs=("hidden_states", "encoder_hidden_states"),
    outputs=("hidden_states", "encoder_hidden_states"),
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
    # HunyuanVideo double-stream block: as FLUX's, but it returns the image stream first.
    "HunyuanVideoTransformerBlock": BlockSpec(cached=("attn", "ff", "ff_context"), **_IMAGE_FIRST_STREAMS),
    # HunyuanVideo single-stream block: as FLUX's (its attention returns an (image, text) pair).
    "HunyuanVideoSingleTransformerBlock": BlockSpec(
        cached=("proj_out",), skipped=("attn", "proj_mlp", "act_mlp"), **_IMAGE_FIRST_STREAMS
    ),
    # SD3 / SD3.5 joint block: the last block has no ff_context and returns None as its text stream;
    # SD3.5's dual-attention blocks add attn2.
    "JointTransformerBlock": BlockSpec(
        cached=("attn", "ff"), optional=("attn2", "ff_context"), **_FLUX_STREAMS
    ),
    # CogVideoX: joint attention returns (video, text) outputs; one MLP over both, split after.
    "CogVideoXBlock": BlockSpec(cached=("attn1", "ff"), **_IMAGE_FIRST_STREAMS),
    # Qwen-Image: joint attention returns (image, text) outputs; one MLP per stream.
    "QwenImageTransformerBlock": BlockSpec(cached=("attn", "img_mlp", "txt_mlp"), **_FLUX_STREAMS),
    # HiDream's blocks (inside HiDreamBlock wrappers); its text stream gains per-block Llama tokens
    # between blocks, so the whole-stack update is not defined: granularity "stack" does not apply.
    "HiDreamImageTransformerBlock": BlockSpec(cached=("attn1", "ff_i", "ff_t"), **_IMAGE_FIRST_STREAMS),
    "HiDreamImageSingleTransformerBlock": BlockSpec(cached=("attn1", "ff_i")),
    # Handled by discovery alone (one stream, children among DEFAULT_CACHED_CHILDREN):
    # WanTransformerBlock (attn1, attn2, ffn), LTXVideoTransformerBlock (attn1, attn2, ff),
    # SanaTransformerBlock (attn1, optional attn2, ff), BasicTransformerBlock of DiT (attn1, ff) and
    # PixArt (attn1, attn2, ff).
}


def register_block_spec(block_class: type | str, spec: BlockSpec) -> None:
    """Teach the cache a block family: how blocks of `block_class` (a class or its name) are cached.

    Example, for a block whose forward is `(x, context, temb) -> x` with children `attn` and `ffn`:
    `register_block_spec(MyBlock, BlockSpec(cached=("attn", "ffn"), inputs=("x",)))`. A later
    registration of the same class replaces the earlier one; it applies to caches applied after it.
    """
    name = block_class if isinstance(block_class, str) else getattr(block_class, "__name__", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"block_class must be a class or a class name, got {block_class!r}")
    if not isinstance(spec, BlockSpec):
        raise TypeError(f"spec must be a taylorseer.BlockSpec, got {type(spec).__name__}")
    BLOCK_SPECS[name] = spec


# Wrapper blocks whose real block is one child: its path inside the wrapper.
WRAPPED_BLOCKS = {"HiDreamBlock": "block"}  # HiDream: a two-stream or a one-stream block inside

# Block lists that are embedders, not the denoising stack: never cached, never part of the stack.
IGNORED_BLOCKS = frozenset(
    {
        "HunyuanVideoIndividualTokenRefinerBlock",  # HunyuanVideo's text refiner
        "TextProjection",  # HiDream's caption projections
    }
)
