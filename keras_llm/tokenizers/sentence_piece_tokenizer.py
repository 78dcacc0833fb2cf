"""In-graph SentencePiece tokenizer whose ids match Hugging Face's ``T5Tokenizer``.

Tokenization runs in the ops behind ``tensorflow_text.SentencepieceTokenizer`` (the
SentencePiece C++ library as TensorFlow ops), so it works inside ``tf.data`` pipelines,
``tf.function`` and exported SavedModels. On top of the SentencePiece model it adds what HF's T5
tokenizer adds:

1. T5's sentinels ``<extra_id_0>`` ... ``<extra_id_{n-1}>`` are not pieces of the model: they
   are ids appended after its vocabulary, counting down (``<extra_id_0>`` is the last id);
2. special tokens (``<pad>``, ``</s>``, ``<unk>``, sentinels) written in the text are matched
   verbatim first, and the text between them is encoded piece by piece;
3. optionally ``</s>`` is appended, as HF does with ``add_special_tokens=True``.

``train_sentence_piece`` trains a T5-style model (``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2,
no BOS) with the ``sentencepiece`` package, which is only needed for training.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from typing import Any

import keras
import tensorflow as tf
from tensorflow_text.python.ops.sentencepiece_tokenizer import gen_sentencepiece_tokenizer

from keras_llm.tokenizers.string_tokenizer import StringTokenizer, escape_regex, split_keep

_PAD, _END, _UNK = "<pad>", "</s>", "<unk>"
_SPACE = "\u2581"  # SentencePiece's meta symbol for a space ("▁").



def sentinel_token(index: int) -> str:
    """T5's name of sentinel ``index``: ``<extra_id_{index}>``."""
    return f"<extra_id_{index}>"


def _read_proto(proto: str | os.PathLike | bytes) -> tuple[bytes, str]:
    """(model bytes, a description for error messages) from a path or the bytes themselves."""
    if isinstance(proto, (bytes, bytearray)):
        return bytes(proto), "the given model bytes"
    path = os.fspath(proto)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SentencePiece model file not found: '{path}'")
    with open(path, "rb") as f:
        return f.read(), f"'{path}'"


class _SentencePieceModel(tf.saved_model.experimental.TrackableResource):
    """The SentencePiece model as a TF resource, with the few ops the tokenizer needs.

    ``tf_text.SentencepieceTokenizer`` creates its model resource owned by the eager kernel
    that made it, and ``tf.random.set_seed`` / ``keras.utils.set_random_seed`` clear the eager
    kernel cache, deleting the model ("Resource ... does not exist" on the next call). Created
    eagerly, this resource therefore gets its own shared name (it outlives the kernel) and is
    destroyed with this object. In graphs (SavedModel export) it stays kernel-owned, as in
    tf-text, which is what lets every loaded SavedModel have its own copy.
    """

    def __init__(self, model: bytes) -> None:
        super().__init__()
        self._model = model
        _ = self.resource_handle  # Creates the resource now, to fail early on a bad model.

    def _create_resource(self) -> tf.Tensor:
        if tf.executing_eagerly():
            name = f"keras_llm_sentencepiece_{uuid.uuid4().hex}"
            return gen_sentencepiece_tokenizer.sentencepiece_op(model=self._model, shared_name=name)
        return gen_sentencepiece_tokenizer.sentencepiece_op(model=self._model)

    def _destroy_resource(self) -> None:
        handle = self._resource_handle
        if handle is not None and tf.executing_eagerly() and not tf.is_symbolic_tensor(handle):
            tf.raw_ops.DestroyResourceOp(resource=handle, ignore_lookup_error=True)

    def vocab_size(self) -> tf.Tensor:
        return gen_sentencepiece_tokenizer.sentencepiece_vocab_size_op(self.resource_handle)

    def id_to_string(self, ids: tf.Tensor) -> tf.Tensor:
        return gen_sentencepiece_tokenizer.sentencepiece_id_to_string_op(self.resource_handle, ids)

    def tokenize(self, text: tf.Tensor) -> tf.RaggedTensor:
        """[n] strings -> [n, (ids)] int32 (no sampling, no BOS/EOS)."""
        values, splits = gen_sentencepiece_tokenizer.sentencepiece_tokenize_op(
            self.resource_handle, text, 0, 1.0, False, False, False, tf.int32, return_nbest=False
        )
        return tf.RaggedTensor.from_row_splits(values, splits, validate=False)

    def detokenize(self, ids: tf.RaggedTensor) -> tf.Tensor:
        """[n, (ids)] -> [n] strings."""
        return gen_sentencepiece_tokenizer.sentencepiece_detokenize_op(
            self.resource_handle, ids.flat_values, ids.row_splits, False, False, False
        )


@keras.saving.register_keras_serializable(package="keras_llm")
class SentencePieceTokenizer(StringTokenizer):
    """SentencePiece tokenizer whose ids match Hugging Face's (T5) ``T5Tokenizer``.

    Runs entirely in the TensorFlow graph (usable in ``tf.data`` and SavedModels). The model
    bytes are kept in the config, so ``get_config`` / ``from_config`` need no file.

    Args:
        proto: path to a SentencePiece ``.model`` file, or its bytes.
        add_end_token: append ``</s>`` to every sequence (HF's ``add_special_tokens=True``).
        extra_ids: number of T5 sentinels appended after the SentencePiece vocabulary (100 for
            T5). ``<extra_id_0>`` gets the last id, ``<extra_id_{extra_ids-1}>`` the first.
        special_tokens_in_strings: match ``<pad>``, ``</s>``, ``<unk>`` and the sentinels
            written literally in the input, as HF does.

    Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "text.txt").write_text("the quick brown fox jumps over the lazy dog\\n" * 50)
    >>> model = train_sentence_piece(folder / "text.txt", folder / "spm", vocab_size=30)
    >>> tokenizer = SentencePieceTokenizer(model, add_end_token=True, extra_ids=2)
    >>> ids = tokenizer(["the lazy dog"])
    >>> ids.to_list()[0][-1] == tokenizer.end_token_id
    True
    >>> tokenizer.detokenize(ids).numpy().tolist()
    [b'the lazy dog']
    >>> tokenizer.vocabulary_size(), tokenizer.sentinel_ids(2)  # <extra_id_0> is the last id
    (32, [31, 30])
    """

    utf8_note = (
        " (Hugging Face tokenizers only accept Python str, so there is no reference encoding "
        "for them)"
    )

    def __init__(
        self,
        proto: str | os.PathLike | bytes,
        add_end_token: bool = False,
        extra_ids: int = 0,
        special_tokens_in_strings: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

        if int(extra_ids) < 0:
            raise ValueError(f"SentencePieceTokenizer: `extra_ids` must be >= 0, got {extra_ids}.")
        proto_bytes, source = _read_proto(proto)
        if not proto_bytes:
            raise ValueError(f"SentencePieceTokenizer: the SentencePiece model {source} is empty.")
        try:
            self._sentence_piece = _SentencePieceModel(proto_bytes)
            pieces = self._sentence_piece.id_to_string(tf.range(self._sentence_piece.vocab_size()))
        except (tf.errors.OpError, ValueError, TypeError) as e:
            raise ValueError(
                f"SentencePieceTokenizer: {source} is not a valid SentencePiece model "
                f"(a serialized ModelProto, e.g. HF's spiece.model): {e}"
            ) from None

        self.proto = proto_bytes
        self.add_end_token = bool(add_end_token)
        self.extra_ids = int(extra_ids)
        self.special_tokens_in_strings = bool(special_tokens_in_strings)

        self._pieces = [p.decode("utf-8") for p in pieces.numpy().tolist()]
        self.sentence_piece_size = len(self._pieces)
        # Sentinels count down from the end of the vocabulary, as in HF's T5Tokenizer.
        self._vocabulary = self._pieces + [
            sentinel_token(self.extra_ids - 1 - i) for i in range(self.extra_ids)
        ]
        self._token_to_id = {t: i for i, t in enumerate(self._vocabulary)}
        self.pad_token_id = self._token_to_id.get(_PAD)
        self.end_token_id = self._token_to_id.get(_END)
        self.unknown_token_id = self._token_to_id.get(_UNK)
        if self.add_end_token and self.end_token_id is None:
            raise ValueError(
                f"SentencePieceTokenizer: add_end_token=True but the model {source} has no "
                f"{_END!r} piece."
            )

        # Special tokens matched in the text, longest first like HF's trie.
        special = [t for t in (_PAD, _END, _UNK) if t in self._token_to_id]
        special += [sentinel_token(i) for i in range(self.extra_ids)]
        self.special_tokens = sorted(special, key=len, reverse=True)
        self._special_pattern = "|".join(escape_regex(t) for t in self.special_tokens)
        # Plain constants rather than tf.lookup tables (no extra resources to track).
        self._special_tokens_tensor = tf.constant(self.special_tokens or [""], tf.string)
        self._special_ids_tensor = tf.constant(
            [self._token_to_id[t] for t in self.special_tokens] or [0], tf.int32
        )
        self._sentinel_strings = tf.constant(
            self._vocabulary[self.sentence_piece_size :] or [""], tf.string
        )
        # Whether a piece starts with "▁", i.e. decodes with a leading space (see detokenize).
        self._starts_with_space = tf.constant([p.startswith(_SPACE) for p in self._pieces], tf.bool)
        self.built = True

    # --- Construction helpers ----------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> SentencePieceTokenizer:
        """Loads a folder with ``spiece.model`` (HF's T5 layout) or a ``.model`` file itself.

        For a folder, ``extra_ids`` comes from its ``tokenizer_config.json`` when given there,
        else it is 100 like HF's ``T5Tokenizer``; for a bare ``.model`` file it is 0. Explicit
        ``kwargs`` win.
        """
        path = os.fspath(path)
        options: dict[str, Any] = {}
        if os.path.isdir(path):
            model_file = os.path.join(path, "spiece.model")
            if not os.path.isfile(model_file):
                raise FileNotFoundError(
                    f"SentencePieceTokenizer.from_pretrained: no spiece.model in '{path}' (HF's "
                    f"T5 layout); found {sorted(os.listdir(path))}."
                )
            options["extra_ids"] = 100
            config_file = os.path.join(path, "tokenizer_config.json")
            if os.path.isfile(config_file):
                with open(config_file, encoding="utf-8") as f:
                    config = json.load(f)
                if isinstance(config.get("extra_ids"), int):
                    options["extra_ids"] = config["extra_ids"]
        elif os.path.isfile(path):
            model_file = path
        else:
            raise FileNotFoundError(
                f"SentencePieceTokenizer.from_pretrained: '{path}' is neither a folder holding "
                "spiece.model nor a SentencePiece .model file."
            )
        options.update(kwargs)
        return cls(proto=model_file, **options)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                # Base64 keeps the config JSON-serializable and independent of the file.
                "proto": base64.b64encode(self.proto).decode("ascii"),
                "add_end_token": self.add_end_token,
                "extra_ids": self.extra_ids,
                "special_tokens_in_strings": self.special_tokens_in_strings,
            }
        )
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SentencePieceTokenizer:
        config = dict(config)
        if isinstance(config.get("proto"), str):
            config["proto"] = base64.b64decode(config["proto"])
        return cls(**config)

    # --- Vocabulary accessors ----------------------------------------------------------------
    def vocabulary_size(self) -> int:
        """SentencePiece pieces plus the ``extra_ids`` sentinels."""
        return len(self._vocabulary)

    def get_vocabulary(self) -> list[str]:
        """Tokens ordered by id (the sentinels last, ``<extra_id_0>`` at the very end)."""
        return list(self._vocabulary)

    def token_to_id(self, token: str) -> int:
        if token not in self._token_to_id:
            raise KeyError(f"Token {token!r} is not in the vocabulary.")
        return self._token_to_id[token]

    def id_to_token(self, id: int) -> str:  # noqa: A002 - mirrors keras-hub's API
        if not 0 <= int(id) < len(self._vocabulary):
            raise IndexError(f"Id {id} is out of range [0, {len(self._vocabulary)}).")
        return self._vocabulary[int(id)]

    def sentinel_ids(self, n: int) -> list[int]:
        """Ids of ``<extra_id_0>`` ... ``<extra_id_{n-1}>``, in that order (for span corruption)."""
        if not 0 <= n <= self.extra_ids:
            raise ValueError(
                f"SentencePieceTokenizer: asked for {n} sentinel ids but the tokenizer has "
                f"extra_ids={self.extra_ids}."
            )
        return [self.vocabulary_size() - 1 - i for i in range(n)]

    # --- Tokenization --------------------------------------------------------------------------
    def _tokenize_flat(self, text: tf.Tensor) -> tf.RaggedTensor:
        """[n] strings -> [n, (ids)] int32."""
        text = self._check_utf8(text)
        if self.special_tokens_in_strings and self.special_tokens:
            # Split special tokens out first (HF: added tokens, `normalized=False`), then encode
            # the text between them separately, as HF does.
            pieces = split_keep(text, self._special_pattern)
            flat = pieces.flat_values
            matches = tf.equal(tf.expand_dims(flat, 1), self._special_tokens_tensor)
            is_special = tf.reduce_any(matches, axis=1)
            special_ids = tf.gather(
                self._special_ids_tensor, tf.argmax(tf.cast(matches, tf.int32), axis=1)
            )
            special_rows = tf.RaggedTensor.from_row_lengths(
                tf.boolean_mask(special_ids, is_special), tf.cast(is_special, tf.int64)
            )
            normal_rows = self._sentence_piece.tokenize(tf.where(is_special, "", flat))
            # Exactly one of the two rows is non-empty for each piece.
            ids = tf.concat([special_rows, normal_rows], axis=1)
            ids = pieces.with_flat_values(ids).merge_dims(1, 2)
        else:
            ids = self._sentence_piece.tokenize(text)
        if self.add_end_token:
            end = tf.fill([tf.shape(text)[0], 1], tf.constant(self.end_token_id, tf.int32))
            ids = tf.concat([ids, tf.RaggedTensor.from_tensor(end)], axis=1)
        return ids

    def detokenize(self, ids: Any) -> tf.Tensor:
        """Ids [batch, (tokens)] (ragged or dense) -> strings [batch]; [tokens] -> a scalar.

        SentencePiece decoding (control pieces such as ``</s>`` vanish, ``<unk>`` reads
        " ⁇ "), with sentinel ids rendered as ``<extra_id_k>``, spaced as HF's ``decode``.
        """
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        ids = tf.cast(ids, tf.int32)
        rank = ids.shape.rank
        if rank == 1:
            return self._detokenize_2d(tf.RaggedTensor.from_tensor(ids[tf.newaxis]))[0]
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        if ids.ragged_rank > 1:
            return tf.map_fn(
                self.detokenize, ids, fn_output_signature=tf.TensorSpec(None, tf.string)
            )
        return self._detokenize_2d(ids)

    def _detokenize_2d(self, ids: tf.RaggedTensor) -> tf.Tensor:
        if not self.extra_ids:
            return self._sentence_piece.detokenize(ids)
        # Cut each row into segments: every sentinel alone, the ids between them together.
        # SentencePiece decodes the latter; the sentinels become their text.
        flat = ids.flat_values
        row = ids.value_rowids()
        is_sentinel = flat >= self.sentence_piece_size
        position = tf.range(tf.size(flat, out_type=tf.int64))
        row_start = tf.gather(ids.row_splits, row)
        previous_is_sentinel = tf.concat([[False], is_sentinel[:-1]], axis=0)
        starts = (position == row_start) | is_sentinel | previous_is_sentinel
        segment = tf.cumsum(tf.cast(starts, tf.int64)) - 1
        num_segments = tf.reduce_sum(tf.cast(starts, tf.int64))
        segments = tf.RaggedTensor.from_value_rowids(flat, segment, nrows=num_segments)
        first_id = tf.boolean_mask(flat, starts)
        segment_is_sentinel = tf.boolean_mask(is_sentinel, starts)
        text = self._sentence_piece.detokenize(
            tf.ragged.boolean_mask(segments, segments < self.sentence_piece_size)
        )
        # SentencePiece drops the "▁" of the first piece it decodes; only a row's first
        # segment is really first, so the others get that space back (as HF's decode).
        not_first = tf.boolean_mask(position != row_start, starts)
        safe_first = tf.minimum(first_id, self.sentence_piece_size - 1)
        space = not_first & ~segment_is_sentinel & tf.gather(self._starts_with_space, safe_first)
        text = tf.where(space, tf.strings.join([" ", text]), text)
        sentinel_text = tf.gather(
            self._sentinel_strings,
            tf.maximum(first_id - self.sentence_piece_size, 0),
        )
        text = tf.where(segment_is_sentinel, sentinel_text, text)
        segment_row = tf.boolean_mask(row, starts)
        rows = tf.RaggedTensor.from_value_rowids(text, segment_row, nrows=ids.nrows())
        return tf.strings.reduce_join(rows, axis=1)


def train_sentence_piece(
    text_file: str | os.PathLike,
    model_prefix: str | os.PathLike,
    vocab_size: int = 8000,
    model_type: str = "unigram",
    extra_ids: int = 100,
    character_coverage: float = 1.0,
    input_sentence_size: int = 0,
    num_threads: int = 2,
    **kwargs: Any,
) -> str:
    """Trains a T5-style SentencePiece model and returns the path of its ``.model`` file.

    The special pieces are T5's: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2 and no BOS. T5's
    sentinels are not pieces of the model (neither in HF's ``T5Tokenizer``): they are
    ``extra_ids`` ids appended after its ``vocab_size`` pieces by
    ``SentencePieceTokenizer(model, extra_ids=extra_ids)``; ``extra_ids`` is only checked here.

    Args:
        text_file: a UTF-8 text file, one sentence per line.
        model_prefix: where to write ``{model_prefix}.model`` and ``{model_prefix}.vocab``.
        vocab_size: number of SentencePiece pieces (T5: 32000).
        model_type: "unigram" (T5), "bpe", "char" or "word".
        extra_ids: the number of sentinels the model will be used with (T5: 100).
        character_coverage: fraction of characters covered by the pieces (1.0: all).
        input_sentence_size: train on at most this many (sampled) lines; 0 for all.
        num_threads: training threads.
        **kwargs: other ``sentencepiece.SentencePieceTrainer`` options.

    Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "text.txt").write_text("the quick brown fox jumps over the lazy dog\\n" * 50)
    >>> path = train_sentence_piece(folder / "text.txt", folder / "spm", vocab_size=30)
    >>> SentencePieceTokenizer(path, extra_ids=100).get_vocabulary()[:3]
    ['<pad>', '</s>', '<unk>']
    """
    try:
        import sentencepiece as spm
    except ImportError:
        raise ImportError(
            "train_sentence_piece needs the `sentencepiece` package: pip install sentencepiece"
        ) from None
    text_file, model_prefix = os.fspath(text_file), os.fspath(model_prefix)
    if not os.path.isfile(text_file):
        raise FileNotFoundError(f"Text file not found: '{text_file}'")
    if int(extra_ids) < 0:
        raise ValueError(f"`extra_ids` must be >= 0, got {extra_ids}.")
    if int(vocab_size) < 4:
        raise ValueError(f"`vocab_size` must be >= 4 (3 special pieces + text), got {vocab_size}.")
    options: dict[str, Any] = {
        "input": text_file,
        "model_prefix": model_prefix,
        "vocab_size": int(vocab_size),
        "model_type": model_type,
        "character_coverage": float(character_coverage),
        "pad_id": 0,
        "eos_id": 1,
        "unk_id": 2,
        "bos_id": -1,
        "pad_piece": _PAD,
        "eos_piece": _END,
        "unk_piece": _UNK,
        "num_threads": int(num_threads),
        "minloglevel": 2,  # SentencePiece logs every training step to stderr otherwise.
    }
    if input_sentence_size:
        options["input_sentence_size"] = int(input_sentence_size)
        options["shuffle_input_sentence"] = True
    options.update(kwargs)
    try:
        spm.SentencePieceTrainer.train(**options)
    except RuntimeError as e:
        raise ValueError(f"SentencePiece training on '{text_file}' failed: {e}") from None
    return model_prefix + ".model"
