"""How keras-llm builds its dense sublayers: one initializer draw each, and output-major
projections."""

from __future__ import annotations

import string

import keras


def output_major_dense(units: int, input_rank: int, name: str, use_bias: bool = True,
                       **kwargs) -> keras.layers.EinsumDense:
    """`x @ kernel.T + bias` with `kernel` of shape `[units, in]`: an `EinsumDense`.

    Why not `keras.layers.Dense` (`[in, units]`): at one row (batch-1 decoding), XLA's GPU
    compiler turns a matrix-vector product into an elementwise product and a sum over `in`.
    Summed along the kernel's major axis, as with `[in, units]`, the weight-sized product is
    written to memory and read back by a second kernel whenever `units <= in` (a Transformer
    block's attention output and second feed-forward projections); summed along the minor
    axis it fuses into one kernel (`benchmarks/NOTES.md`, "Batch 1: matmuls written out as
    products"). `EinsumDense` keeps Keras' quantization (`model.quantize("int8")`).

    Example:
    >>> import numpy as np
    >>> layer = output_major_dense(4, input_rank=3, name="output")
    >>> tuple(layer(np.ones((2, 5, 8), "float32")).shape), tuple(layer.kernel.shape)
    ((2, 5, 4), (4, 8))
    """
    if not 2 <= input_rank <= 8:
        raise ValueError(f"input_rank must be between 2 and 8; got {input_rank}.")
    leading = string.ascii_lowercase[: input_rank - 1]
    return keras.layers.EinsumDense(
        f"{leading}y,zy->{leading}z",
        output_shape=(None,) * (input_rank - 2) + (units,),
        bias_axes="z" if use_bias else None,
        name=name,
        **kwargs,
    )


def kernel_is_output_major(layer: keras.layers.Layer) -> bool:
    """Whether a dense-like layer stores its kernel `[out, in]` (see `output_major_dense`)."""
    if not isinstance(layer, keras.layers.EinsumDense):
        return False
    inputs, output = layer.equation.split("->")
    kernel = inputs.split(",")[1]
    return kernel[0] == output[-1]


def clone_initializer(initializer):
    """A fresh copy of a Keras initializer, for one weight.

    A Keras 3 random initializer without a seed picks one when it is made and then returns
    the same values for every call of the same shape: shared by a block's projections, or by
    a model's blocks, it would start all of them from the same matrix. Each copy picks its
    own seed (from the global one, so `keras.utils.set_random_seed` still fixes them); a
    seeded initializer stays seeded. Strings and other values pass through.

    Example:
    >>> import numpy as np
    >>> shared = keras.initializers.TruncatedNormal(stddev=0.02)
    >>> bool(np.allclose(shared((3, 3)), shared((3, 3))))
    True
    >>> bool(np.allclose(clone_initializer(shared)((3, 3)), clone_initializer(shared)((3, 3))))
    False
    """
    if not isinstance(initializer, keras.initializers.Initializer):
        return initializer
    return initializer.__class__.from_config(initializer.get_config())
