"""gmmscape: conformational landscapes of cryo-EM particles through 3D Gaussian mixture models."""

__version__ = "0.1.0"
