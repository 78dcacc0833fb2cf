"""The masked-language-model head whose output projection is the word embedding matrix."""

from __future__ import annotations

import keras
from keras import ops

from keras_llm.layers.dense import clone_initializer
from keras_llm.layers.embeddings import project_onto_embeddings
from keras_llm.layers.feed_forward import get_activation
from keras_llm.layers.layer_normalization import LayerNormalization


@keras.saving.register_keras_serializable(package="keras_llm")
class MaskedLMHead(keras.layers.Layer):
    """Predicts the tokens at masked positions: `E norm(act(W h + b)) + bias`.

    The output projection reuses the transposed token embedding matrix `E`
    (weight tying, as BERT does), so the head adds only a dense transform, a
    layer normalization and a per-token bias.

    Args:
        token_embedding: the `keras.layers.Embedding` whose matrix projects to the
            vocabulary.
        activation: activation of the transform (BERT: `"gelu"`).
        layer_norm_epsilon: epsilon of the layer normalization.
        kernel_initializer: initializer of the transform's kernel.

    Example:
    >>> import numpy as np, keras
    >>> embedding = keras.layers.Embedding(100, 8)
    >>> embedding.build((None,))
    >>> head = MaskedLMHead(embedding)
    >>> sequence = np.random.rand(2, 6, 8).astype("float32")
    >>> tuple(head(sequence, mask_positions=np.array([[1, 4], [0, 2]])).shape)
    (2, 2, 100)
    """

    def __init__(
        self,
        token_embedding: keras.layers.Embedding,
        activation: str = "gelu",
        layer_norm_epsilon: float = 1e-12,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.token_embedding = token_embedding
        self.activation = activation
        self.activation_fn = get_activation(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, inputs_shape, mask_positions_shape=None):
        hidden_size = inputs_shape[-1]
        self.transform = keras.layers.Dense(
            hidden_size,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="transform",
        )
        self.transform.build((None, hidden_size))
        self.layer_norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm"
        )
        self.layer_norm.build((None, hidden_size))
        self.output_bias = self.add_weight(
            name="output_bias",
            shape=(self.token_embedding.input_dim,),
            initializer="zeros",
        )
        self.built = True

    def call(self, inputs, mask_positions=None):
        """Logits `[batch, num_masks, vocab]` at `mask_positions` (all positions if `None`)."""
        if mask_positions is not None:
            if len(mask_positions.shape) != 2:
                raise ValueError(
                    "`mask_positions` must have shape [batch, num_masks]; received "
                    f"shape {mask_positions.shape}."
                )
            inputs = ops.take_along_axis(
                inputs, ops.expand_dims(ops.cast(mask_positions, "int32"), -1), axis=1
            )
        x = self.layer_norm(self.activation_fn(self.transform(inputs)))
        # Through the helper, not `.embeddings`: that holds int8 values once quantized.
        logits = project_onto_embeddings(ops.cast(x, self.compute_dtype), self.token_embedding)
        return logits + ops.cast(self.output_bias, self.compute_dtype)

    def compute_output_shape(self, inputs_shape, mask_positions_shape=None):
        length = inputs_shape[1] if mask_positions_shape is None else mask_positions_shape[1]
        return (inputs_shape[0], length, self.token_embedding.input_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            token_embedding=keras.saving.serialize_keras_object(self.token_embedding),
            activation=self.activation,
            layer_norm_epsilon=self.layer_norm_epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # A standalone head gets its own embedding; a model re-ties it on rebuild.
        config["token_embedding"] = keras.saving.deserialize_keras_object(
            config["token_embedding"]
        )
        return cls(**config)
