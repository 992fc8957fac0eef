"""rsfm: training and applying remote-sensing foundation models on georeferenced rasters."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rsfm")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
