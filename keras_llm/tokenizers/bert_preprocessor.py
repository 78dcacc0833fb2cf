"""In-graph BERT input packing: ``[CLS] a [SEP] (b [SEP])`` + padding, like HF's tokenizer call."""

from __future__ import annotations

import os
from typing import Any

import keras
import tensorflow as tf
import tensorflow_text as tf_text

from keras_llm.tokenizers.word_piece_tokenizer import WordPieceTokenizer

_TRUNCATE_STRATEGIES = ("longest_first", "round_robin", "waterfall")


@keras.saving.register_keras_serializable(package="keras_llm")
class BertPreprocessor(keras.layers.Layer):
    """Tokenizes one or two text segments and packs them into fixed-length BERT inputs.

    Output matches ``transformers.BertTokenizer(a, b, max_length=sequence_length,
    truncation="longest_first", padding="max_length")``: ``token_ids`` = input_ids,
    ``segment_ids`` = token_type_ids, ``padding_mask`` = attention_mask (as bool).

    Args:
        tokenizer: a ``WordPieceTokenizer`` whose vocabulary has ``[CLS]``, ``[SEP]``, ``[PAD]``.
        sequence_length: packed length, special tokens included.
        truncate: ``"longest_first"`` (HF's rule: the longer segment loses tokens first; when
            both must be cut the longer one, or the second on a tie, keeps the odd token),
            ``"round_robin"`` (tensorflow-text's RoundRobinTrimmer) or ``"waterfall"``
            (cut the last segment first).

    Example:
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "quick", "fox"]
    >>> pre = BertPreprocessor(WordPieceTokenizer(vocab), sequence_length=8)
    >>> out = pre((["the quick"], ["fox"]))
    >>> out["token_ids"].numpy().tolist()
    [[2, 4, 5, 3, 6, 3, 0, 0]]
    >>> out["segment_ids"].numpy().tolist()
    [[0, 0, 0, 0, 1, 1, 0, 0]]
    """

    def __init__(
        self,
        tokenizer: WordPieceTokenizer,
        sequence_length: int = 128,
        truncate: str = "longest_first",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        if isinstance(tokenizer, dict):  # a serialized tokenizer (from_config)
            tokenizer = keras.saving.deserialize_keras_object(tokenizer)
        if not isinstance(tokenizer, WordPieceTokenizer):
            raise TypeError(
                f"`tokenizer` must be a WordPieceTokenizer, got {type(tokenizer).__name__}."
            )
        if truncate not in _TRUNCATE_STRATEGIES:
            raise ValueError(f"`truncate` must be one of {_TRUNCATE_STRATEGIES}, got {truncate!r}.")
        if int(sequence_length) < 2:
            raise ValueError(
                f"`sequence_length` must be >= 2 ([CLS] + [SEP]), got {sequence_length}."
            )
        self.tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        self.truncate = truncate
        # Fail at construction, not at the first batch, when the vocabulary can't pack inputs.
        self.cls_token_id = tokenizer.special_token_id("cls")
        self.sep_token_id = tokenizer.special_token_id("sep")
        self.pad_token_id = tokenizer.special_token_id("pad")
        self.built = True

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, sequence_length: int = 128, **kwargs: Any
    ) -> BertPreprocessor:
        """Builds the tokenizer with ``WordPieceTokenizer.from_pretrained(path)``.

        Raises:
            FileNotFoundError: `path` does not exist, or is a folder without vocab.txt; the
                message says which.
        """
        return cls(WordPieceTokenizer.from_pretrained(path), sequence_length, **kwargs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
                "sequence_length": self.sequence_length,
                "truncate": self.truncate,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BertPreprocessor:
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)

    # --- Packing --------------------------------------------------------------------------------
    def _truncate_pair(
        self, a: tf.RaggedTensor, b: tf.RaggedTensor, budget: int
    ) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
        if self.truncate == "round_robin":
            return tuple(tf_text.RoundRobinTrimmer(budget).trim([a, b]))
        if self.truncate == "waterfall":
            return tuple(tf_text.WaterfallTrimmer(budget).trim([a, b]))
        # HF `tokenizers` LongestFirst, in closed form (same result as removing one token at a
        # time from the longer segment, with the tie going to the *second* segment).
        len_a = a.row_lengths()
        len_b = b.row_lengths()
        shorter = tf.minimum(len_a, len_b)
        half = budget // 2
        # Short segment fits in its share: keep it whole, give the rest to the long one.
        keep_short = tf.where(shorter <= budget - shorter, shorter, half)
        keep_long = tf.where(shorter <= budget - shorter, budget - shorter, budget - half)
        a_is_long = len_a > len_b
        keep_a = tf.where(a_is_long, keep_long, keep_short)
        keep_b = tf.where(a_is_long, keep_short, keep_long)
        fits = len_a + len_b <= budget
        keep_a = tf.where(fits, len_a, tf.minimum(len_a, keep_a))
        keep_b = tf.where(fits, len_b, tf.minimum(len_b, keep_b))
        return _keep_first(a, keep_a), _keep_first(b, keep_b)

    def _pack(self, segments: list[tf.RaggedTensor]) -> dict[str, tf.Tensor]:
        batch = segments[0].nrows()
        cls_col = tf.fill([batch, 1], tf.constant(self.cls_token_id, tf.int32))
        sep_col = tf.fill([batch, 1], tf.constant(self.sep_token_id, tf.int32))
        pieces, segment_pieces = [cls_col], [tf.zeros_like(cls_col)]
        for index, segment in enumerate(segments):
            pieces += [segment, sep_col]
            segment_pieces += [
                tf.ones_like(segment) * index,
                tf.fill([batch, 1], tf.constant(index, tf.int32)),
            ]
        token_ids = tf.concat(pieces, axis=1)
        segment_ids = tf.concat(segment_pieces, axis=1)
        shape = [None, self.sequence_length]
        return {
            "token_ids": token_ids.to_tensor(self.pad_token_id, shape=shape),
            "segment_ids": segment_ids.to_tensor(0, shape=shape),
            "padding_mask": tf.ones_like(token_ids, tf.bool).to_tensor(False, shape=shape),
        }

    def call(self, inputs: Any) -> dict[str, tf.Tensor]:
        inputs = _as_segments(inputs)
        if len(inputs) not in (1, 2):
            raise ValueError(f"BertPreprocessor takes 1 or 2 segments, got {len(inputs)}.")
        texts = [tf.convert_to_tensor(x, dtype=tf.string) for x in inputs]
        scalar = texts[0].shape.rank == 0
        if scalar:
            texts = [tf.reshape(x, [1]) for x in texts]
        segments = [self.tokenizer.tokenize(x) for x in texts]
        if len(segments) == 1:
            segments = [segments[0][:, : self.sequence_length - 2]]
        else:
            if self.sequence_length < 3:
                raise ValueError(
                    "`sequence_length` must be >= 3 for sentence pairs ([CLS] a [SEP] b [SEP]), "
                    f"got {self.sequence_length}."
                )
            segments = list(self._truncate_pair(*segments, self.sequence_length - 3))
        outputs = self._pack(segments)
        if scalar:
            outputs = {k: v[0] for k, v in outputs.items()}
        return outputs


def _keep_first(ids: tf.RaggedTensor, keep: tf.Tensor) -> tf.RaggedTensor:
    """Keeps the first ``keep[i]`` tokens of each row (per-row lengths, unlike a slice)."""
    positions = tf.ragged.range(ids.row_lengths())
    return tf.ragged.boolean_mask(ids, positions < tf.expand_dims(keep, 1))


def _as_segments(inputs: Any) -> tuple:
    """One segment (tensor / list of strings) or two (tuple, dict, list of two batches)."""
    if isinstance(inputs, dict):
        return tuple(inputs.values())
    if isinstance(inputs, tuple):
        return inputs
    if isinstance(inputs, list) and inputs and not isinstance(inputs[0], (str, bytes)):
        return tuple(inputs)
    return (inputs,)
