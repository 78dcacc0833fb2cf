"""Fixed sinusoidal position encodings (Vaswani et al., 2017)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_llm")
class SinusoidalPositionEncoding(keras.layers.Layer):
    """`PE(pos, 2i) = sin(pos / 10000^(2i/d))`, `PE(pos, 2i+1) = cos(pos / 10000^(2i/d))`.

    Called on a `[batch, seq, d]` tensor it returns encodings of the same shape
    (to be added to the embeddings); `start_index` offsets the positions, as a
    decoder needs when it feeds one token at a time.

    Args:
        max_wavelength: the base of the geometric progression of wavelengths.

    Example:
    >>> import numpy as np
    >>> encoding = SinusoidalPositionEncoding()
    >>> outputs = encoding(np.zeros((1, 3, 4), "float32"))
    >>> np.asarray(outputs[0, 1], "float64").round(3).tolist()
    [0.841, 0.54, 0.01, 1.0]
    """

    def __init__(self, max_wavelength: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength

    def call(self, inputs, start_index=0):
        shape = ops.shape(inputs)
        length, width = shape[-2], inputs.shape[-1]
        if width % 2:
            raise ValueError(f"The encoding width must be even; received {width}.")
        positions = ops.cast(ops.arange(length) + start_index, "float32")
        # Frequencies 1 / 10000^(2i/d) for i in [0, d/2).
        exponents = ops.cast(ops.arange(0, width, 2), "float32") / float(width)
        frequencies = ops.power(float(self.max_wavelength), -exponents)
        angles = positions[:, None] * frequencies[None, :]
        # Interleave so that even columns hold sin and odd columns cos.
        encoding = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)
        encoding = ops.reshape(encoding, (length, width))
        return ops.broadcast_to(ops.cast(encoding, self.compute_dtype), shape)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(max_wavelength=self.max_wavelength)
        return config
