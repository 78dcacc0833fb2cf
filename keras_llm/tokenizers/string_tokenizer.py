"""What every in-graph tokenizer shares: string inputs, UTF-8 checks, batch shapes."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
import tensorflow_text as tf_text


class StringTokenizer(keras.layers.Layer):
    """Base of the keras-llm tokenizers: a Keras layer that takes strings.

    Subclasses implement `_tokenize_flat` (`[n]` strings -> `[n, (ids)]`) and get
    `tokenize`/`call` for scalars, batches and higher ranks, and `_check_utf8`,
    which refuses invalid UTF-8 with a clear error (`ValueError` eagerly,
    `InvalidArgumentError` inside graphs). `utf8_note` adds a class's reason.
    """

    utf8_note: str = ""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "int32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        # Inputs are strings: keep Keras from casting them to the layer's compute dtype.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True

    def _invalid_utf8_message(self) -> str:
        return (
            f"{type(self).__name__}: input contains bytes that are not valid UTF-8"
            f"{self.utf8_note}. Decode/clean the text first (e.g. "
            "bytes.decode('utf-8', errors='replace'))."
        )

    def _check_utf8(self, text: tf.Tensor) -> tf.Tensor:
        """Refuses invalid UTF-8: ``ValueError`` eagerly, ``InvalidArgumentError`` in graphs."""
        # A lossless transcode is the identity exactly when the bytes are valid UTF-8.
        fixed = tf.strings.unicode_transcode(
            text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
        )
        valid = tf.reduce_all(tf.equal(fixed, text))
        if tf.executing_eagerly():
            # Raised here so the message survives Keras' exception re-wrapping on any backend.
            if not bool(valid):
                raise ValueError(self._invalid_utf8_message())
            return text
        check = tf.debugging.assert_equal(valid, True, message=self._invalid_utf8_message())
        with tf.control_dependencies([check]):
            return tf.identity(text)

    def _tokenize_flat(self, text: tf.Tensor) -> tf.RaggedTensor:
        raise NotImplementedError

    def tokenize(self, inputs: Any) -> tf.Tensor | tf.RaggedTensor:
        """Strings [batch] -> ragged int32 ids [batch, (tokens)]; a scalar -> dense [tokens]."""
        inputs = tf.convert_to_tensor(inputs, dtype=tf.string)
        rank = inputs.shape.rank
        if rank is None:
            raise ValueError(f"{type(self).__name__} needs inputs of known rank.")
        if rank == 0:
            return self._tokenize_flat(tf.reshape(inputs, [1]))[0]
        if rank == 1:
            return self._tokenize_flat(inputs)
        # Higher ranks: tokenize the flattened strings, then restore the outer dense dims.
        result = self._tokenize_flat(tf.reshape(inputs, [-1]))
        for axis in range(rank - 1, 0, -1):
            result = tf.RaggedTensor.from_uniform_row_length(
                result, tf.shape(inputs, out_type=tf.int64)[axis]
            )
        return result

    def call(self, inputs: Any) -> tf.Tensor | tf.RaggedTensor:
        return self.tokenize(inputs)


def escape_regex(token: str) -> str:
    """Escapes a literal for RE2 (re.escape also escapes spaces, which RE2 does not need)."""
    return "".join("\\" + c if c in r".^$*+?()[]{}|\-" else c for c in token)


def split_keep(text: tf.Tensor, pattern: str) -> tf.RaggedTensor:
    """[n] -> [n, (pieces)]: the matches of ``pattern`` and the (non-empty) text between."""
    # tf-text's regex_split stops at a NUL byte: split a copy with \x01 instead (same length).
    safe = tf.strings.regex_replace(text, r"\x00", "\x01")
    _, begins, ends = tf_text.regex_split_with_offsets(
        safe, delim_regex_pattern=pattern, keep_delim_regex_pattern=pattern
    )
    flat = tf.strings.substr(
        tf.gather(text, begins.value_rowids()),
        begins.flat_values,
        ends.flat_values - begins.flat_values,
    )
    return begins.with_flat_values(flat)
