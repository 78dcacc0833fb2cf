"""One Transformer decoder block: causal self-attention, optional cross-attention, feed-forward."""

from __future__ import annotations

import keras

from keras_llm.layers.attention import MultiHeadAttention
from keras_llm.layers.feed_forward import FeedForward


@keras.saving.register_keras_serializable(package="keras_llm")
class TransformerDecoderBlock(keras.layers.Layer):
    """Causal self-attention (with a key/value cache), cross-attention, feed-forward.

    Pre-norm by default (GPT-2): `x = x + sublayer(norm(x))`; `normalize_first=False`
    gives the original post-norm decoder. With `cross_attention=True` the block
    also attends to an encoder's output (`encoder_output`), as in T5 and the
    original Transformer.

    Args:
        num_heads: attention heads.
        intermediate_size: width of the feed-forward hidden layer.
        activation: feed-forward activation (see `FeedForward`).
        dropout: dropout on each sublayer's output.
        attention_dropout: dropout on the attention probabilities (default `dropout`).
        layer_norm_epsilon: epsilon of the layer normalizations.
        normalize_first: pre-norm (default) or post-norm.
        cross_attention: add a cross-attention sublayer.
        kernel_initializer: initializer of all kernels.

    Example:
    >>> import numpy as np
    >>> block = TransformerDecoderBlock(num_heads=2, intermediate_size=32)
    >>> x = np.random.rand(2, 5, 8).astype("float32")
    >>> block(x).shape
    (2, 5, 8)
    """

    def __init__(
        self,
        num_heads: int,
        intermediate_size: int,
        activation: str = "gelu_approximate",
        dropout: float = 0.0,
        attention_dropout: float | None = None,
        layer_norm_epsilon: float = 1e-5,
        normalize_first: bool = True,
        cross_attention: bool = False,
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
        self.cross_attention = cross_attention
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _layer_norm(self, name: str) -> keras.layers.LayerNormalization:
        return keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name
        )

    def build(self, inputs_shape, encoder_output_shape=None):
        attention = dict(
            dropout=self.attention_dropout,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
        )
        self.self_attention = MultiHeadAttention(self.num_heads, name="self_attention", **attention)
        self.self_attention.build(inputs_shape)
        self.self_attention_norm = self._layer_norm("self_attention_norm")
        self.self_attention_norm.build(inputs_shape)
        if self.cross_attention:
            self.cross_attention_layer = MultiHeadAttention(
                self.num_heads, cross_attention=True, name="cross_attention", **attention
            )
            self.cross_attention_layer.build(inputs_shape, encoder_output_shape or inputs_shape)
            self.cross_attention_norm = self._layer_norm("cross_attention_norm")
            self.cross_attention_norm.build(inputs_shape)
        self.feed_forward = FeedForward(
            self.intermediate_size,
            activation=self.activation,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="feed_forward",
        )
        self.feed_forward.build(inputs_shape)
        self.feed_forward_norm = self._layer_norm("feed_forward_norm")
        self.feed_forward_norm.build(inputs_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def _sublayer(self, x, norm, fn, training):
        """Applies `fn` with a residual connection, normalizing before or after."""
        if self.normalize_first:
            return x + self.dropout_layer(fn(norm(x)), training=training)
        return norm(x + self.dropout_layer(fn(x), training=training))

    def call(
        self,
        inputs,
        encoder_output=None,
        padding_mask=None,
        encoder_padding_mask=None,
        cache=None,
        cache_update_index=None,
        training=None,
    ):
        """Decodes `inputs` `[batch, seq, hidden]`.

        Args:
            encoder_output: `[batch, encoder_seq, hidden]` for cross-attention.
            padding_mask: `[batch, seq]` (or `[batch, cache_length]` with a cache).
            encoder_padding_mask: `[batch, encoder_seq]`.
            cache: this block's self-attention cache `[batch, 2, max_length, heads,
                head_size]`; the output is then `(outputs, updated_cache)`.
            cache_update_index: position of the first of `inputs` in the cache.
        """
        if self.cross_attention and encoder_output is None:
            raise ValueError("This decoder block has cross-attention; pass `encoder_output`.")
        new_cache = None

        def self_attend(x):
            nonlocal new_cache
            if cache is None:
                return self.self_attention(
                    x, padding_mask=padding_mask, use_causal_mask=True, training=training
                )
            output, new_cache = self.self_attention(
                x,
                padding_mask=padding_mask,
                use_causal_mask=True,
                cache=cache,
                cache_update_index=cache_update_index,
                training=training,
            )
            return output

        x = self._sublayer(inputs, self.self_attention_norm, self_attend, training)
        if self.cross_attention:
            x = self._sublayer(
                x,
                self.cross_attention_norm,
                lambda h: self.cross_attention_layer(
                    h, key_value=encoder_output, padding_mask=encoder_padding_mask,
                    training=training,
                ),
                training,
            )
        x = self._sublayer(x, self.feed_forward_norm, self.feed_forward, training)
        return x if cache is None else (x, new_cache)

    def compute_output_shape(self, inputs_shape, encoder_output_shape=None):
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
            cross_attention=self.cross_attention,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
