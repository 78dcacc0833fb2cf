"""Root-mean-square layer normalization (Zhang & Sennrich, 2019), as T5 uses it."""

from __future__ import annotations

import keras
from keras import ops

from keras_llm.layers.layer_normalization import LayerNormalization


@keras.saving.register_keras_serializable(package="keras_llm")
class RMSNormalization(keras.layers.Layer):
    """`x / sqrt(mean(x^2) + epsilon) * scale`: no mean subtraction, no bias.

    Statistics are computed in float32 under mixed precision.

    Args:
        epsilon: added to the mean square.

    Example:
    >>> import numpy as np
    >>> outputs = RMSNormalization()(np.array([[3.0, 4.0]], "float32"))
    >>> np.asarray(outputs, "float64").round(4).tolist()
    [[0.8485, 1.1314]]
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, inputs_shape):
        self.scale = self.add_weight(name="scale", shape=(inputs_shape[-1],), initializer="ones")
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        x = x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + self.epsilon)
        return ops.cast(x * ops.cast(self.scale, "float32"), self.compute_dtype)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def normalization_layer(kind: str, epsilon: float, dtype, name: str) -> keras.layers.Layer:
    """A `"layer_norm"` (with bias) or `"rms_norm"` (T5) layer."""
    if kind == "layer_norm":
        return LayerNormalization(epsilon=epsilon, dtype=dtype, name=name)
    if kind == "rms_norm":
        return RMSNormalization(epsilon=epsilon, dtype=dtype, name=name)
    raise ValueError(f"normalization must be 'layer_norm' or 'rms_norm'; got {kind!r}.")
