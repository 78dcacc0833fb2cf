"""A UTF-8 byte tokenizer: 256 ids, no vocabulary file, any text, in-graph."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
import tensorflow_text as tf_text

from keras_llm.tokenizers.string_tokenizer import StringTokenizer


@keras.saving.register_keras_serializable(package="keras_llm")
class ByteTokenizer(StringTokenizer):
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
        super().__init__(**kwargs)
        self._splitter = tf_text.ByteSplitter()

    def vocabulary_size(self) -> int:
        return 256

    def _tokenize_flat(self, text: tf.Tensor) -> tf.RaggedTensor:
        return tf.cast(self._splitter.split(text), tf.int32)

    def detokenize(self, ids: Any) -> tf.Tensor:
        """Joins byte ids back into strings (ids outside 0-255 raise)."""
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        byte_strings = tf.constant([bytes([b]) for b in range(256)])
        tf.debugging.assert_less(tf.reduce_max(ids), 256, message="Byte ids must be < 256.")
        pieces = tf.gather(byte_strings, tf.cast(ids, tf.int32))
        return tf.strings.reduce_join(pieces, axis=-1)
