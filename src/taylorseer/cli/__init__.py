"""Internal: the command line, `taylorseer generate | bench | calibrate` (`main`), its option checks
(`checks`), the generate command's runs (`generate`) and the calibration of the bundled models
(`calibration`)."""

from taylorseer.cli.main import main

__all__ = ["main"]
