"""TaylorSeer: faster diffusion transformers by forecasting features between full steps."""

from taylorseer.api import TaylorSeerHandle, apply_taylorseer
from taylorseer.config import TaylorSeerConfig

__all__ = ["TaylorSeerConfig", "TaylorSeerHandle", "apply_taylorseer"]
__version__ = "0.1.0"
