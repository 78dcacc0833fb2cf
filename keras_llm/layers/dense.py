"""How keras-llm builds its dense sublayers: one initializer draw each, and output-major
projections."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_llm")
class OutputMajorDense(keras.layers.EinsumDense):
    """A dense layer, `x @ kernel.T + bias`, whose kernel has shape `[units, in]`.

    Every projection of a Transformer block (`MultiHeadAttention`, `FeedForward`) is one. Why
    not `keras.layers.Dense` (`[in, units]`): at one row (batch-1 decoding), XLA's GPU compiler
    turns a matrix-vector product into an elementwise product and a sum over `in`. Summed
    along the kernel's major axis, as with `[in, units]`, the weight-sized product is often
    written to memory and read back by a second kernel (for GPT-2's attention output and second
    feed-forward matmuls, and for T5-small's fused query/key/value and first feed-forward
    ones); summed along the minor axis it fuses into one kernel, for every shape measured
    (`benchmarks/NOTES.md`, "Batch 1: matmuls written out as products"). Larger batches and
    training run the same matmuls either way.

    It is an `EinsumDense` (`"ay,zy->az"`), so Keras' quantization (`model.quantize("int8")`)
    applies, on the inputs' leading axes flattened into one: TensorFlow differentiates an
    einsum over `[batch, seq, in]` by a batched matmul that writes one kernel-sized gradient
    per batch row before summing them (10 % of a CPU training step's time in a BERT
    feed-forward layer); over `[rows, in]` the kernel's gradient is one matmul. On
    TensorFlow the float call is `(kernel @ x.T).T` (see `_rows_call`).

    Args:
        units: output features.
        use_bias: whether to add a bias of shape `[units]`.
        **kwargs: `EinsumDense`'s other arguments (`activation`, `kernel_initializer`,
            `bias_initializer`, `name`, `dtype`, ...).

    Example:
    >>> import numpy as np
    >>> layer = OutputMajorDense(4, name="output")
    >>> tuple(layer(np.ones((2, 5, 8), "float32")).shape), tuple(layer.kernel.shape)
    ((2, 5, 4), (4, 8))
    """

    def __init__(self, units: int, use_bias: bool = True, **kwargs):
        super().__init__("ay,zy->az", output_shape=(units,),
                         bias_axes="z" if use_bias else None, **kwargs)
        self.units = units
        self.use_bias = use_bias

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"{self.name} needs inputs of rank 2 or more (the last axis holds "
                             f"the features); got shape {tuple(input_shape)}.")
        super().build((None, input_shape[-1]))
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_shape[-1]})

    def call(self, inputs, training=None):
        return self._on_rows(self._rows_call, inputs)

    def _rows_call(self, rows):
        """`EinsumDense.call` on `[rows, in]`, with TensorFlow's product written out."""
        if keras.backend.backend() == "tensorflow":
            # TensorFlow hands XLA `x @ kernel.T` (as einsum or matmul) as a transpose op of
            # the kernel and a matmul; in a decode loop XLA's CPU compiler then copies the whole
            # transposed kernel at every step (gpt2_small, batch 1: 4x slower).
            # `(kernel @ x.T).T` reads the kernel as it lies and transposes only the activations.
            outputs = ops.transpose(ops.matmul(self.kernel, ops.transpose(rows)))
        else:
            outputs = ops.einsum(self.equation, rows, self.kernel)
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        return outputs if self.activation is None else self.activation(outputs)

    def quantized_call(self, inputs, training=None):  # Keras calls it instead of `call`.
        return self._on_rows(super().quantized_call, inputs, training=training)

    def _on_rows(self, rows_call, inputs, **kwargs):
        shape = ops.shape(inputs)
        outputs = rows_call(ops.reshape(inputs, (-1, shape[-1])), **kwargs)
        return ops.reshape(outputs, (*shape[:-1], self.units))

    def quantize(self, mode=None, type_check=True, config=None):
        # Keras refuses to quantize subclasses of its layers unless they opt in; this one
        # only reshapes around EinsumDense's own call, so its quantization applies as is.
        super().quantize(mode, type_check=False, config=config)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self) -> dict:
        config = super().get_config()
        for key in ("equation", "output_shape", "bias_axes"):
            config.pop(key)
        return {**config, "units": self.units, "use_bias": self.use_bias}


def kernel_is_output_major(layer: keras.layers.Layer) -> bool:
    """Whether a dense-like layer stores its kernel `[out, in]` (see `OutputMajorDense`).

    Example:
    >>> import keras
    >>> kernel_is_output_major(OutputMajorDense(4)), kernel_is_output_major(keras.layers.Dense(4))
    (True, False)
    """
    return isinstance(layer, OutputMajorDense)  # The one layer of ours that does.


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
