"""A UTF-8 byte tokenizer: 256 ids, no vocabulary file, any text, in-graph."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
import tensorflow_text as tf_text


@keras.saving.register_keras_serializable(package="keras_llm")
class ByteTokenizer(keras.layers.Layer):
    """Maps text to its UTF-8 bytes (ids 0-255) and back.

    The vocabulary of character-level language models without the cost of a
    character table: every string, in any script, round-trips exactly.

    Example:
    >>> tokenizer = ByteTokenizer()
    >>> tokenizer(["hi!", "é"]).to_list()
    [[104, 105, 33], [195, 169]]
    >>> tokenizer.detokenize([104, 105]).numpy()
    b'hi'
    """

    end_token_id = None

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("dtype", "int32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        # Inputs are strings: keep Keras from casting them to the layer's compute dtype.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self._splitter = tf_text.ByteSplitter()

    def vocabulary_size(self) -> int:
        return 256

    def call(self, inputs: Any) -> tf.Tensor | tf.RaggedTensor:
        return self.tokenize(inputs)

    def tokenize(self, inputs: Any) -> tf.Tensor | tf.RaggedTensor:
        """Bytes of each string: a ragged `[batch, None]` int32 (1-D for a scalar)."""
        inputs = tf.convert_to_tensor(inputs, dtype=tf.string)
        return tf.cast(self._splitter.split(inputs), tf.int32)

    def detokenize(self, ids: Any) -> tf.Tensor:
        """Joins byte ids back into strings (ids outside 0-255 raise)."""
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        byte_strings = tf.constant([bytes([b]) for b in range(256)])
        tf.debugging.assert_less(tf.reduce_max(ids), 256, message="Byte ids must be < 256.")
        pieces = tf.gather(byte_strings, tf.cast(ids, tf.int32))
        return tf.strings.reduce_join(pieces, axis=-1)
