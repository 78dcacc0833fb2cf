"""The position-wise feed-forward network of a Transformer block."""

from __future__ import annotations

import keras
from keras import ops

from keras_llm.layers.dense import OutputMajorDense, clone_initializer

# HF config names -> our names; "gelu" is exact (erf), "gelu_approximate" the tanh form.
ACTIVATION_ALIASES = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_fast": "gelu_approximate",
    "gelu_approximate": "gelu_approximate",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
    "tanh": "tanh",
}


def get_activation(name: str):
    """Returns the activation function for a keras-llm or Hugging Face name.

    Example:
    >>> import numpy as np
    >>> gelu_new = get_activation("gelu_new")  # GPT-2's name for tanh-approximated GELU.
    >>> np.asarray(gelu_new(np.array([1.0], "float32")), "float64").round(4).tolist()
    [0.8412]
    """
    if name not in ACTIVATION_ALIASES:
        raise ValueError(
            f"Unknown activation {name!r}; expected one of {sorted(ACTIVATION_ALIASES)}."
        )
    name = ACTIVATION_ALIASES[name]
    if name == "gelu":
        return lambda x: ops.gelu(x, approximate=False)
    if name == "gelu_approximate":
        return lambda x: ops.gelu(x, approximate=True)
    return getattr(ops, name)


@keras.saving.register_keras_serializable(package="keras_llm")
class FeedForward(keras.layers.Layer):
    """Two dense layers with an activation between: `W2 act(W1 x + b1) + b2`.

    Args:
        intermediate_size: width of the hidden layer.
        activation: `"gelu"` (exact, erf), `"gelu_approximate"` (tanh), `"relu"`,
            `"silu"`, or a Hugging Face name such as `"gelu_new"`.
        use_bias: whether both dense layers have biases.
        dropout: dropout rate applied to the hidden activations.
        gated: gated linear unit (T5 v1.1, Shazeer 2020): `act(W0 x) * (W1 x)` as the
            hidden layer, with a second input projection.
        kernel_initializer: initializer of the kernels.

    Example:
    >>> import numpy as np
    >>> ffn = FeedForward(intermediate_size=32, activation="gelu")
    >>> tuple(ffn(np.ones((2, 4, 8), "float32")).shape)
    (2, 4, 8)
    """

    def __init__(
        self,
        intermediate_size: int,
        activation: str = "gelu",
        use_bias: bool = True,
        dropout: float = 0.0,
        gated: bool = False,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.gated = gated
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.activation_fn = get_activation(activation)
        self.use_bias = use_bias
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, inputs_shape):
        def dense() -> dict:  # Each sublayer draws its own initial kernel.
            return dict(
                use_bias=self.use_bias,
                kernel_initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
            )

        self.intermediate_dense = OutputMajorDense(
            self.intermediate_size, name="intermediate", **dense())
        self.intermediate_dense.build(inputs_shape)
        if self.gated:
            self.gate_dense = OutputMajorDense(self.intermediate_size, name="gate", **dense())
            self.gate_dense.build(inputs_shape)
        self.output_dense = OutputMajorDense(inputs_shape[-1], name="output", **dense())
        self.output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_size,))
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def call(self, inputs, training=None):
        hidden = self.activation_fn(self.intermediate_dense(inputs))
        if self.gated:
            hidden = hidden * self.gate_dense(inputs)
        hidden = self.dropout_layer(hidden, training=training)
        return self.output_dense(hidden)

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            intermediate_size=self.intermediate_size,
            activation=self.activation,
            use_bias=self.use_bias,
            dropout=self.dropout,
            gated=self.gated,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
