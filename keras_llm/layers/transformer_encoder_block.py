"""One Transformer encoder block: self-attention then feed-forward, each with a residual."""

from __future__ import annotations

import keras

from keras_llm.layers.transformer_block import TransformerBlock


@keras.saving.register_keras_serializable(package="keras_llm")
class TransformerEncoderBlock(TransformerBlock):
    """Bidirectional self-attention and a feed-forward network.

    Post-norm (BERT, the original Transformer): `x = norm(x + sublayer(x))`.
    Pre-norm (`normalize_first=True`, T5 and most modern models):
    `x = x + sublayer(norm(x))`, which trains more stably in deep stacks. The
    options of `TransformerBlock` (RMS norm, no biases, gated feed-forward,
    unscaled logits) describe T5's encoder.

    Example:
    >>> import numpy as np
    >>> block = TransformerEncoderBlock(num_heads=2, intermediate_size=32)
    >>> x = np.random.rand(2, 5, 8).astype("float32")
    >>> tuple(block(x, padding_mask=np.array([[1, 1, 1, 0, 0]] * 2)).shape)
    (2, 5, 8)
    """

    def build(self, inputs_shape):
        self.attention = self._attention("attention")
        self.attention.build(inputs_shape)
        self.attention_norm = self._norm("attention_norm")
        self.attention_norm.build(inputs_shape)
        self.feed_forward = self._feed_forward()
        self.feed_forward.build(inputs_shape)
        self.feed_forward_norm = self._norm("feed_forward_norm")
        self.feed_forward_norm.build(inputs_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        attention_bias=None,
        return_attention_scores: bool = False,
        training=None,
    ):
        """Returns `[batch, seq, hidden]`, and the attention probabilities if asked.

        `attention_bias` is added to the attention logits (T5's position bias).
        """
        scores = None

        def attend(x):
            nonlocal scores
            output = self.attention(
                x,
                padding_mask=padding_mask,
                attention_mask=attention_mask,
                attention_bias=attention_bias,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            if return_attention_scores:
                output, scores = output
            return output

        x = self._residual(inputs, self.attention_norm, attend, training)
        x = self._residual(x, self.feed_forward_norm, self.feed_forward, training)
        return (x, scores) if return_attention_scores else x
