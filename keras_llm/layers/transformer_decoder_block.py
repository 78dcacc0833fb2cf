"""One Transformer decoder block: causal self-attention, optional cross-attention, feed-forward."""

from __future__ import annotations

import keras

from keras_llm.layers.transformer_block import TransformerBlock


@keras.saving.register_keras_serializable(package="keras_llm")
class TransformerDecoderBlock(TransformerBlock):
    """Causal self-attention (with a key/value cache), cross-attention, feed-forward.

    Pre-norm by default (GPT-2, T5): `x = x + sublayer(norm(x))`. With
    `cross_attention=True` the block also attends to an encoder's output, as
    in T5 and the original Transformer; its keys and values can be computed
    once per sequence and passed back in as `cross_attention_cache`.

    Args:
        cross_attention: add a cross-attention sublayer.
        (the rest as `TransformerBlock`; defaults here are GPT-2's: pre-norm,
        tanh-approximated GELU, epsilon 1e-5.)

    Example:
    >>> import numpy as np
    >>> block = TransformerDecoderBlock(num_heads=2, intermediate_size=32)
    >>> x = np.random.rand(2, 5, 8).astype("float32")
    >>> tuple(block(x).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        num_heads: int,
        intermediate_size: int,
        activation: str = "gelu_approximate",
        layer_norm_epsilon: float = 1e-5,
        normalize_first: bool = True,
        cross_attention: bool = False,
        **kwargs,
    ):
        super().__init__(
            num_heads,
            intermediate_size,
            activation=activation,
            layer_norm_epsilon=layer_norm_epsilon,
            normalize_first=normalize_first,
            **kwargs,
        )
        self.cross_attention = cross_attention

    def build(self, inputs_shape, encoder_output_shape=None):
        self.self_attention = self._attention("self_attention")
        self.self_attention.build(inputs_shape)
        self.self_attention_norm = self._norm("self_attention_norm")
        self.self_attention_norm.build(inputs_shape)
        if self.cross_attention:
            self.cross_attention_layer = self._attention("cross_attention", cross_attention=True)
            self.cross_attention_layer.build(inputs_shape, encoder_output_shape or inputs_shape)
            self.cross_attention_norm = self._norm("cross_attention_norm")
            self.cross_attention_norm.build(inputs_shape)
        self.feed_forward = self._feed_forward()
        self.feed_forward.build(inputs_shape)
        self.feed_forward_norm = self._norm("feed_forward_norm")
        self.feed_forward_norm.build(inputs_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def call(
        self,
        inputs,
        encoder_output=None,
        padding_mask=None,
        encoder_padding_mask=None,
        attention_bias=None,
        cache=None,
        cache_update_index=None,
        cross_attention_cache=None,
        training=None,
    ):
        """Decodes `inputs` `[batch, seq, hidden]`.

        Args:
            encoder_output: `[batch, encoder_seq, hidden]` for cross-attention.
            padding_mask: `[batch, seq]` (or `[batch, cache_length]` with a cache).
            encoder_padding_mask: `[batch, encoder_seq]`.
            attention_bias: added to the self-attention logits (T5's position bias).
            cache: this block's self-attention cache, a `(keys, values)` pair of
                `[batch, heads, max_length, head_size]`; the output is then
                `(outputs, updated_cache)`.
            cache_update_index: position of the first of `inputs` in the cache.
            cross_attention_cache: the encoder's keys and values for this block
                (`cross_attention_layer.compute_key_value_cache`), used instead of
                `encoder_output`.
        """
        if self.cross_attention and encoder_output is None and cross_attention_cache is None:
            raise ValueError("This decoder block has cross-attention; pass `encoder_output`.")
        new_cache = None

        def self_attend(x):
            nonlocal new_cache
            output = self.self_attention(
                x,
                padding_mask=padding_mask,
                use_causal_mask=True,
                attention_bias=attention_bias,
                cache=cache,
                cache_update_index=cache_update_index,
                training=training,
            )
            if cache is not None:
                output, new_cache = output
            return output

        def cross_attend(x):
            output = self.cross_attention_layer(
                x,
                key_value=encoder_output if cross_attention_cache is None else None,
                padding_mask=encoder_padding_mask,
                cache=cross_attention_cache,
                training=training,
            )
            return output[0] if cross_attention_cache is not None else output

        x = self._residual(inputs, self.self_attention_norm, self_attend, training)
        if self.cross_attention:
            x = self._residual(x, self.cross_attention_norm, cross_attend, training)
        x = self._residual(x, self.feed_forward_norm, self.feed_forward, training)
        return x if cache is None else (x, new_cache)

    def get_config(self):
        return {**super().get_config(), "cross_attention": self.cross_attention}
