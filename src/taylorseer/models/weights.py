"""Loading bundled and user weights with errors that name the file and what is wrong."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

BUNDLED = Path(__file__).resolve().parent.parent / "weights"


def bundled_path(name: str) -> Path:
    """The folder of a bundled model inside the installed package."""
    path = BUNDLED / name
    if not path.is_dir():
        known = sorted(p.name for p in BUNDLED.iterdir()) if BUNDLED.is_dir() else []
        raise FileNotFoundError(f"no bundled model {name!r} in {BUNDLED}; bundled: {known}")
    return path


def load_safetensors(path: str | Path, expected: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Read a safetensors file; with `expected`, check that keys and shapes match it exactly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable safetensors file: {error}") from error
    if expected is not None:
        missing = sorted(set(expected) - set(tensors))
        unexpected = sorted(set(tensors) - set(expected))
        if missing or unexpected:
            raise ValueError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
        for key, tensor in tensors.items():
            if tensor.shape != expected[key].shape:
                raise ValueError(
                    f"{path}: {key} has shape {tuple(tensor.shape)}, the model expects "
                    f"{tuple(expected[key].shape)}"
                )
    return tensors
