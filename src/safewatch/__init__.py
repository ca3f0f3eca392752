"""safewatch: turn the CCTV cameras a plant already has into an active safety system."""

__all__ = ["__version__"]

__version__ = "0.1.0"
