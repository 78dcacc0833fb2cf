"""What encoder and decoder blocks share: their options, sublayer wiring and config."""

from __future__ import annotations

import keras

from keras_llm.layers.attention import MultiHeadAttention
from keras_llm.layers.feed_forward import FeedForward
from keras_llm.layers.rms_normalization import normalization_layer


class TransformerBlock(keras.layers.Layer):
    """Base of `TransformerEncoderBlock` and `TransformerDecoderBlock`.

    Args:
        num_heads: attention heads.
        intermediate_size: width of the feed-forward hidden layer.
        activation: feed-forward activation (see `FeedForward`).
        dropout: dropout on each sublayer's output (the residual branch).
        attention_dropout: dropout on the attention probabilities (default `dropout`).
        layer_norm_epsilon: epsilon of the normalizations.
        normalize_first: pre-norm `x + f(norm(x))` instead of post-norm `norm(x + f(x))`.
        head_size: per-head width (default `hidden // num_heads`; T5 sets its own).
        use_bias: biases in the dense layers (T5 has none).
        attention_scale: logit scale; `None` is `1/sqrt(head_size)` (T5 uses 1.0).
        normalization: `"layer_norm"` or `"rms_norm"` (T5).
        gated_feed_forward: gated feed-forward (T5 v1.1).
        kernel_initializer: initializer of all kernels.
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
        head_size: int | None = None,
        use_bias: bool = True,
        attention_scale: float | None = None,
        normalization: str = "layer_norm",
        gated_feed_forward: bool = False,
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
        self.head_size = head_size
        self.use_bias = use_bias
        self.attention_scale = attention_scale
        self.normalization = normalization
        self.gated_feed_forward = gated_feed_forward
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _attention(self, name: str, cross_attention: bool = False) -> MultiHeadAttention:
        return MultiHeadAttention(
            self.num_heads,
            head_size=self.head_size,
            cross_attention=cross_attention,
            use_bias=self.use_bias,
            scale=self.attention_scale,
            dropout=self.attention_dropout,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name=name,
        )

    def _norm(self, name: str) -> keras.layers.Layer:
        return normalization_layer(
            self.normalization, self.layer_norm_epsilon, self.dtype_policy, name
        )

    def _feed_forward(self) -> FeedForward:
        return FeedForward(
            self.intermediate_size,
            activation=self.activation,
            use_bias=self.use_bias,
            gated=self.gated_feed_forward,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="feed_forward",
        )

    def _residual(self, x, norm, fn, training):
        """`fn` with a residual connection, normalizing before or after."""
        if self.normalize_first:
            return x + self.dropout_layer(fn(norm(x)), training=training)
        return norm(x + self.dropout_layer(fn(x), training=training))

    def compute_output_shape(self, inputs_shape, *args, **kwargs):
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
            head_size=self.head_size,
            use_bias=self.use_bias,
            attention_scale=self.attention_scale,
            normalization=self.normalization,
            gated_feed_forward=self.gated_feed_forward,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
