"""Cache memory per granularity, on paper, from a dual-stream transformer's published config.

    python -m taylorseer.bench.memory_table --out docs/MEMORY.md

Factors are (order + 1) tensors per cached output. For a FLUX-style transformer (double blocks
whose joint attention and MLPs produce image and text outputs; single blocks over the joined
sequence) with I image and T text tokens, hidden size D and C output channels per token, one
factor holds, per sample:
    module: double blocks 2 (I + T) D each (attention and MLP outputs of both streams),
            single blocks (I + T) D each (the output linear)
    block:  (I + T) D per block (each block's residual update of both streams)
    stack:  (I + T) D (the whole stack's update)
    model:  I C (the model output)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Architecture:
    """What the cache size depends on, from a model's config and its sampling resolution."""

    name: str
    double_blocks: int
    single_blocks: int
    hidden: int
    output_channels: int  # per image token
    image_tokens: int
    text_tokens: int
    setting: str  # how the token counts were derived


def factor_elements(arch: Architecture, granularity: str) -> int:
    """Elements of one factor of every cached output, for one sample."""
    joint = (arch.image_tokens + arch.text_tokens) * arch.hidden
    return {
        "module": arch.double_blocks * 2 * joint + arch.single_blocks * joint,
        "block": (arch.double_blocks + arch.single_blocks) * joint,
        "stack": joint,
        "model": arch.image_tokens * arch.output_channels,
    }[granularity]


def cache_bytes(arch: Architecture, granularity: str, order: int, batch: int = 1, itemsize: int = 2) -> int:
    """Bytes of factors at full order: (order + 1) factors per output, `batch` samples."""
    return factor_elements(arch, granularity) * (order + 1) * batch * itemsize


# From the public diffusers configs of the transformers (no weights needed).
FLUX_DEV_1024 = Architecture(
    "FLUX.1-dev, 1024x1024", double_blocks=19, single_blocks=38, hidden=24 * 128, output_channels=64,
    image_tokens=(1024 // 16) ** 2, text_tokens=512,
    setting="VAE /8 then 2x2 packing: 64x64 = 4096 image tokens; 512 T5 tokens",
)  # fmt: skip
HUNYUAN_VIDEO_480P = Architecture(
    "HunyuanVideo, 848x480, 129 frames", double_blocks=20, single_blocks=40, hidden=24 * 128,
    output_channels=16 * 2 * 2, image_tokens=((129 - 1) // 4 + 1) * (480 // 16) * (848 // 16),
    text_tokens=256,
    setting="VAE /8 spatial, /4 temporal, then 1x2x2 patches: 33 x 30 x 53 = 52470 video tokens; "
    "256 text tokens",
)  # fmt: skip


def table(architectures: list[Architecture], orders: tuple[int, ...] = (1, 2)) -> str:
    lines = [
        "# Cache memory per granularity (on paper)",
        "",
        "Bytes of TaylorSeer factors for one sample (guidance-distilled models: one branch), stored in",
        "bfloat16, at full order, computed from the published configs with",
        "`taylorseer.bench.memory_table` (the formula is checked against the engine's measured",
        "`cache_bytes` in tests/test_memory.py).",
        "Regenerate: `python -m taylorseer.bench.memory_table --out docs/MEMORY.md`.",
        "",
        "| model | order | module (the paper) | block | stack | model (our default) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for arch in architectures:
        for order in orders:
            cells = [f"{cache_bytes(arch, g, order) / 2**30:.2f} GiB" for g in ("module", "block", "stack")]
            cells.append(f"{cache_bytes(arch, 'model', order) / 2**20:.1f} MiB")
            lines.append(f"| {arch.name} | {order} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {arch.name}: {arch.setting}." for arch in architectures]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("docs/MEMORY.md"))
    args = parser.parse_args()
    args.out.write_text(table([FLUX_DEV_1024, HUNYUAN_VIDEO_480P]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
