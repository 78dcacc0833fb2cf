"""One Transformer encoder block: self-attention then feed-forward, each with a residual."""

from __future__ import annotations

import keras

from keras_llm.layers.attention import MultiHeadAttention
from keras_llm.layers.feed_forward import FeedForward


@keras.saving.register_keras_serializable(package="keras_llm")
class TransformerEncoderBlock(keras.layers.Layer):
    """Bidirectional self-attention and a feed-forward network.

    Post-norm (BERT, the original Transformer): `x = norm(x + sublayer(x))`.
    Pre-norm (`normalize_first=True`, GPT-2 and most modern models):
    `x = x + sublayer(norm(x))`, which trains more stably in deep stacks.

    Args:
        num_heads: attention heads.
        intermediate_size: width of the feed-forward hidden layer.
        activation: feed-forward activation (see `FeedForward`).
        dropout: dropout on each sublayer's output (the residual branch).
        attention_dropout: dropout on the attention probabilities.
        layer_norm_epsilon: epsilon of both layer normalizations.
        normalize_first: pre-norm instead of post-norm.
        kernel_initializer: initializer of all kernels.

    Example:
    >>> import numpy as np
    >>> block = TransformerEncoderBlock(num_heads=2, intermediate_size=32)
    >>> x = np.random.rand(2, 5, 8).astype("float32")
    >>> block(x, padding_mask=np.array([[1, 1, 1, 0, 0]] * 2)).shape
    (2, 5, 8)
    """

    def __init__(
        self,
        num_heads: int,
        intermediate_size: int,
        activation: str = "gelu",
        dropout: float = 0.0,
        attention_dropout: float | None = None,
        layer_norm_epsilon: float = 1e-12,
        normalize_first: bool = False,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.activation = activation
        self.dropout = dropout
        self.attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, inputs_shape):
        self.attention = MultiHeadAttention(
            self.num_heads,
            dropout=self.attention_dropout,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="attention",
        )
        self.attention.build(inputs_shape)
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="attention_norm"
        )
        self.attention_norm.build(inputs_shape)
        self.feed_forward = FeedForward(
            self.intermediate_size,
            activation=self.activation,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="feed_forward",
        )
        self.feed_forward.build(inputs_shape)
        self.feed_forward_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="feed_forward_norm"
        )
        self.feed_forward_norm.build(inputs_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        return_attention_scores: bool = False,
        training=None,
    ):
        """Returns `[batch, seq, hidden]`, and the attention probabilities if asked."""
        x = inputs
        residual = x
        if self.normalize_first:
            x = self.attention_norm(x)
        attended = self.attention(
            x,
            padding_mask=padding_mask,
            attention_mask=attention_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        scores = None
        if return_attention_scores:
            attended, scores = attended
        x = residual + self.dropout_layer(attended, training=training)
        if not self.normalize_first:
            x = self.attention_norm(x)

        residual = x
        if self.normalize_first:
            x = self.feed_forward_norm(x)
        x = residual + self.dropout_layer(self.feed_forward(x), training=training)
        if not self.normalize_first:
            x = self.feed_forward_norm(x)
        return (x, scores) if return_attention_scores else x

    def compute_output_shape(self, inputs_shape):
        return inputs_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            intermediate_size=self.intermediate_size,
            activation=self.activation,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            normalize_first=self.normalize_first,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
