"""ot-ray: optimal-transport alignment of multilingual encoders, distributed with Ray."""

__version__ = "0.1.0"
