"""keras-llm: Transformer language models for Keras 3, from fine-tuning to TF Serving."""

import importlib

from keras_llm import layers, models
from keras_llm.training import schedules as _schedules  # noqa: F401 - load_model finds WarmupDecay
from keras_llm.version import __version__

# TensorFlow-only edges load on first use, so `import keras_llm` stays light on JAX.
_LAZY_SUBMODULES = ("tokenizers", "convert", "data", "export", "training")


def __getattr__(name):
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"keras_llm.{name}")
    raise AttributeError(f"module 'keras_llm' has no attribute {name!r}")


__all__ = [
    "__version__",
    "convert",
    "data",
    "export",
    "layers",
    "models",
    "tokenizers",
    "training",
]
