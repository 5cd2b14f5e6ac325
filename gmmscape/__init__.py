"""gmmscape: conformational landscapes of cryo-EM particles through 3D Gaussian mixture models."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow start-up chatter out of logs

__version__ = "0.1.0"
