"""TaylorSeer: faster diffusion transformers by forecasting features between full steps.

The public API is what this module exports, plus the command line (`taylorseer`),
`taylorseer.calibrate.calibrate` and the native DiT (`taylorseer.models.dit.DiT`, `.sample`).
Every other module is internal and may change without notice.
"""

from taylorseer.api import TaylorSeerHandle, apply_taylorseer
from taylorseer.config import TaylorSeerConfig
from taylorseer.wiring.families import BlockSpec, register_block_spec

__all__ = ["BlockSpec", "TaylorSeerConfig", "TaylorSeerHandle", "apply_taylorseer", "register_block_spec"]
__version__ = "0.1.0"
