"""Which device TensorFlow computes on, said in every TensorFlow job's log, and a clear
error when the config asks for GPUs that TensorFlow cannot see (a CPU-only TensorFlow,
missing CUDA libraries or an empty CUDA_VISIBLE_DEVICES would otherwise run on the CPU,
many times slower, without a word)."""

from __future__ import annotations

from .errors import InputError


def visible_gpus() -> list[str]:
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def describe() -> str:
    """One line: the GPUs TensorFlow uses, or that it runs on the CPU."""
    gpus = visible_gpus()
    if gpus:
        return f"TensorFlow device: {len(gpus)} GPU(s) ({', '.join(gpus)})"
    return "TensorFlow device: CPU (no GPU visible)"


def check_gpus(requested: int) -> None:
    """Stop with one line when `gpu: N > 0` but TensorFlow sees fewer GPUs."""
    if requested <= 0:
        return
    found = len(visible_gpus())
    if found < requested:
        raise InputError(
            f"gpu: {requested} requested but TensorFlow sees {found} GPU(s); install the "
            "CUDA build (pip install 'gmmscape[gpu]'), check the driver (nvidia-smi) and "
            "CUDA_VISIBLE_DEVICES, or set gpu: 0"
        )
