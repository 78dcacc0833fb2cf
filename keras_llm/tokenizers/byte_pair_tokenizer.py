"""In-graph GPT-2 byte-level BPE tokenizer that reproduces Hugging Face's ``GPT2TokenizerFast``.

Everything here is built from TensorFlow / tensorflow-text ops so the tokenizer runs inside
``tf.data`` pipelines, ``tf.function`` and exported SavedModels (no ``tf.py_function``), and it
keeps no ``tf.lookup`` table (see ``_bpe``), so nothing is left untracked under other backends.

The pipeline mirrors the ``tokenizers`` (Rust) model behind ``transformers.GPT2TokenizerFast``:

1. unsplittable (special) tokens such as ``<|endoftext|>`` written in the text are matched
   verbatim first; the text between them is tokenized piece by piece;
2. ``ByteLevel`` pre-tokenization with GPT-2's regex
   ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``.
   RE2 (TensorFlow's regex engine) has no lookahead, so ``\\s+(?!\\S)`` is emulated by cutting
   every whitespace run that is followed by a non-space before its last character; the regex
   without the lookahead then gives the same words on the pieces between the cuts;
3. each word's UTF-8 bytes start as one symbol each, then the lowest-ranked merge is applied
   until none applies (the byte -> printable-character mapping of GPT-2 only matters for
   reading the vocabulary, so the merge loop works on integer ids directly).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from keras_llm.tokenizers.string_tokenizer import StringTokenizer, escape_regex, split_keep

# --- Character classes -------------------------------------------------------------------
# `\s` in RE2 is ASCII-only, but the Oniguruma regex of `tokenizers` uses Unicode White_Space.
# This set was measured code point by code point against HF's ByteLevel pre-tokenizer.
_WS = (
    r"\x{9}-\x{D}\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}"
    r"\x{3000}"
)

# TensorFlow's RE2 has older Unicode tables than `tokenizers`: these letters (L) and numbers (N)
# are known to HF's regex but not to RE2's `\p{L}` / `\p{N}` (measured over all code points;
# RE2 knows no L/N code point that HF does not).
_L_EXTRA = (
    r"\x{1C89}-\x{1C8A}\x{A7CB}-\x{A7CD}\x{A7DA}-\x{A7DC}\x{105C0}-\x{105F3}\x{10D4A}-\x{10D65}"
    r"\x{10D6F}-\x{10D85}\x{10EC2}-\x{10EC4}\x{11380}-\x{11389}\x{1138B}\x{1138E}"
    r"\x{11390}-\x{113B5}\x{113B7}\x{113D1}\x{113D3}\x{11BC0}-\x{11BE0}\x{13460}-\x{143FA}"
    r"\x{16100}-\x{1611D}\x{16D40}-\x{16D6C}\x{18CFF}\x{1E5D0}-\x{1E5ED}\x{1E5F0}"
    r"\x{2EBF0}-\x{2EE5D}"
)
_N_EXTRA = (
    r"\x{10D40}-\x{10D49}\x{116D0}-\x{116E3}\x{11BF0}-\x{11BF9}\x{16130}-\x{16139}"
    r"\x{16D70}-\x{16D79}\x{1CCF0}-\x{1CCF9}\x{1E5F1}-\x{1E5FA}"
)
_L = r"\p{L}" + _L_EXTRA
_N = r"\p{N}" + _N_EXTRA

_WHITESPACE_RUN = f"[{_WS}]+"
# GPT-2's pattern minus the `\s+(?!\S)` alternative (see the module docstring).
_PRETOKENIZE_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d"
    rf"| ?[{_L}]+| ?[{_N}]+| ?[^{_WS}{_L}{_N}]+|[{_WS}]+"
)

_END_OF_TEXT = "<|endoftext|>"
_MAX_RANK = np.iinfo(np.int32).max


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the alphabet of its vocabulary)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    # Bytes that would be whitespace/control characters are shifted past U+00FF, in order.
    shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


def load_vocabulary(path: str | os.PathLike) -> dict[str, int]:
    """Reads GPT-2's ``encoder.json`` / HF's ``vocab.json`` (a JSON object token -> id)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BPE vocabulary file not found: '{path}'")
    try:
        with open(path, encoding="utf-8") as f:
            vocabulary = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"BPE vocabulary file '{path}' is not valid JSON: {e}") from e
    if not isinstance(vocabulary, dict):
        raise ValueError(
            f"BPE vocabulary file '{path}' must hold a JSON object mapping tokens to ids, "
            f"got {type(vocabulary).__name__}."
        )
    return vocabulary


def load_merges(path: str | os.PathLike) -> list[str]:
    """Reads GPT-2's ``vocab.bpe`` / HF's ``merges.txt`` (``"a b"`` lines, rank = order)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BPE merges file not found: '{path}'")
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in f]
    except UnicodeDecodeError as e:
        raise ValueError(f"BPE merges file '{path}' is not valid UTF-8: {e}") from e
    # Like `tokenizers`: skip the "#version: 0.2" header and blank lines.
    return [line for line in lines if line and not line.startswith("#version")]


@keras.saving.register_keras_serializable(package="keras_llm")
class BytePairTokenizer(StringTokenizer):
    """GPT-2 byte-level BPE tokenizer whose ids match Hugging Face's ``GPT2TokenizerFast``.

    Runs entirely in the TensorFlow graph (usable in ``tf.data`` and SavedModels). No special
    token is added; ``unsplittable_tokens`` written in the text map to their own id, like HF's
    added tokens. Byte-level BPE is lossless, so ``detokenize(tokenize(text)) == text`` for any
    valid UTF-8 text. Invalid UTF-8 is refused (``ValueError`` eagerly,
    ``tf.errors.InvalidArgumentError`` in a graph): HF only accepts Python ``str``, so there is
    no reference encoding for it.

    Each call BPEs the distinct words of the batch in rounds, as many as its longest word needs:
    fast for text, but a single unbroken word of thousands of letters takes seconds.

    Args:
        vocabulary: path to an ``encoder.json`` / ``vocab.json``, or a dict token -> id.
        merges: path to a ``vocab.bpe`` / ``merges.txt`` or a list of ``"a b"`` merges, highest
            priority first.
        sequence_length: if set, outputs are dense, truncated or padded with id 0 to this length
            (GPT-2 has no padding token; mask the padding yourself).
        add_prefix_space: prepend a space to each text piece that does not start with one, as
            HF's ``add_prefix_space=True`` (then ``detokenize`` keeps that space).
        unsplittable_tokens: tokens matched verbatim in the text (must be in the vocabulary).

    Example:
    >>> vocab = {"<|endoftext|>": 0, "a": 1, "b": 2, "Ġ": 3, "ab": 4, "Ġab": 5}
    >>> tokenizer = BytePairTokenizer(vocab, ["a b", "Ġ ab"])
    >>> tokenizer(["ab ab", "ba<|endoftext|>"]).to_list()
    [[4, 5], [2, 1, 0]]
    >>> tokenizer.detokenize([[4, 5]]).numpy().tolist()
    [b'ab ab']
    """

    utf8_note = (
        " (Hugging Face tokenizers only accept Python str, so there is no reference encoding "
        "for them)"
    )

    def __init__(
        self,
        vocabulary: str | os.PathLike | Mapping[str, int],
        merges: str | os.PathLike | Sequence[str],
        sequence_length: int | None = None,
        add_prefix_space: bool = False,
        unsplittable_tokens: Sequence[str] | None = (_END_OF_TEXT,),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)

        if isinstance(vocabulary, (str, os.PathLike)):
            vocabulary = load_vocabulary(vocabulary)
        if isinstance(merges, (str, os.PathLike)):
            merges = load_merges(merges)
        vocabulary = {str(t): int(i) for t, i in dict(vocabulary).items()}
        if not vocabulary:
            raise ValueError("BytePairTokenizer: `vocabulary` is empty.")
        if min(vocabulary.values()) < 0:
            raise ValueError("BytePairTokenizer: vocabulary ids must be >= 0.")
        if sequence_length is not None and int(sequence_length) < 1:
            raise ValueError("`sequence_length` must be >= 1 or None.")
        unsplittable_tokens = list(unsplittable_tokens or [])
        missing = [t for t in unsplittable_tokens if t not in vocabulary]
        if missing:
            raise ValueError(
                f"BytePairTokenizer: unsplittable_tokens {missing} are not in the vocabulary "
                "(pass `unsplittable_tokens=None` for a vocabulary without them)."
            )

        self.vocabulary = vocabulary
        self.merges = [str(m) for m in merges]
        self.sequence_length = None if sequence_length is None else int(sequence_length)
        self.add_prefix_space = bool(add_prefix_space)
        self.unsplittable_tokens = unsplittable_tokens

        size = max(vocabulary.values()) + 1
        self._id_to_token = [""] * size
        for token, i in vocabulary.items():
            self._id_to_token[i] = token
        self.end_token_id = vocabulary.get(_END_OF_TEXT)

        byte_to_char = bytes_to_unicode()
        char_to_byte = {c: b for b, c in byte_to_char.items()}
        # Initial symbols: one per byte; a byte missing from the vocabulary is dropped (-1),
        # as `tokenizers` does for unknown symbols when the model has no unknown token.
        self._byte_ids = tf.constant(
            [vocabulary.get(byte_to_char[b], -1) for b in range(256)], dtype=tf.int32
        )
        self._build_merge_tables(size)

        # Bytes of every id, for `detokenize`. Like HF's ByteLevel decoder, a token with a
        # character outside the byte alphabet (an added token) is emitted as its UTF-8 text.
        decoded = []
        for token in self._id_to_token:
            if token in unsplittable_tokens or any(c not in char_to_byte for c in token):
                decoded.append(token.encode("utf-8"))
            else:
                decoded.append(bytes(char_to_byte[c] for c in token))
        self._decoded_tokens = tf.constant(decoded, dtype=tf.string)

        # Longest first, so that overlapping unsplittable tokens match like HF's trie.
        ordered = sorted(unsplittable_tokens, key=len, reverse=True)
        self._special_pattern = "|".join(escape_regex(t) for t in ordered)
        # Plain constants rather than a tf.lookup table: with a non-TF Keras backend the layer
        # is not a TF trackable, and an untracked table resource would break SavedModel export.
        self._special_tokens_tensor = tf.constant(ordered or [""], tf.string)
        self._special_ids_tensor = tf.constant(
            [vocabulary[t] for t in ordered] or [0], dtype=tf.int32
        )
        self.built = True

    def _build_merge_tables(self, size: int) -> None:
        """Merges as sorted int64 keys ``left_id * size + right_id`` -> (rank, merged id).

        Looked up with ``tf.searchsorted``: no hash table resource, and the merge loop handles
        only integers.
        """
        table: dict[int, tuple[int, int]] = {}
        for rank, merge in enumerate(self.merges):
            parts = merge.split(" ")
            if len(parts) != 2 or not all(parts):
                raise ValueError(
                    f"BytePairTokenizer: merge #{rank} {merge!r} is not of the form 'a b'."
                )
            left, right = parts
            for token in (left, right, left + right):
                if token not in self.vocabulary:
                    raise ValueError(
                        f"BytePairTokenizer: merge #{rank} {merge!r} uses {token!r}, which is not "
                        "in the vocabulary."
                    )
            key = self.vocabulary[left] * size + self.vocabulary[right]
            # Like `tokenizers`, a repeated merge keeps its last rank.
            table[key] = (rank, self.vocabulary[left + right])
        keys = sorted(table)
        # A sentinel key that no pair can have keeps the tables non-empty.
        self._merge_keys = tf.constant(keys + [np.iinfo(np.int64).max], dtype=tf.int64)
        self._merge_key_ranks = tf.constant(
            [table[k][0] for k in keys] + [_MAX_RANK], dtype=tf.int32
        )
        merged = np.full(len(self.merges) + 1, -1, dtype=np.int32)
        for rank, merged_id in table.values():
            merged[rank] = merged_id
        self._merged_ids = tf.constant(merged, dtype=tf.int32)
        self._id_space = size

    # --- Construction helpers ----------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> BytePairTokenizer:
        """Loads from a folder with GPT-2's ``encoder.json`` + ``vocab.bpe`` or HF's
        ``vocab.json`` + ``merges.txt``."""
        path = os.fspath(path)
        candidates = [("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt")]
        if not os.path.isdir(path):
            raise FileNotFoundError(
                f"BytePairTokenizer.from_pretrained: '{path}' is not a directory; expected a "
                "folder holding encoder.json + vocab.bpe (GPT-2) or vocab.json + merges.txt (HF)."
            )
        for vocab_name, merges_name in candidates:
            vocab_file = os.path.join(path, vocab_name)
            merges_file = os.path.join(path, merges_name)
            if os.path.isfile(vocab_file) and os.path.isfile(merges_file):
                return cls(vocabulary=vocab_file, merges=merges_file, **kwargs)
        raise FileNotFoundError(
            f"BytePairTokenizer.from_pretrained: no BPE files in '{path}'; expected "
            "encoder.json + vocab.bpe (GPT-2) or vocab.json + merges.txt (HF); found "
            f"{sorted(os.listdir(path))}."
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "vocabulary": dict(self.vocabulary),
                "merges": list(self.merges),
                "sequence_length": self.sequence_length,
                "add_prefix_space": self.add_prefix_space,
                "unsplittable_tokens": list(self.unsplittable_tokens),
            }
        )
        return config

    # --- Vocabulary accessors ----------------------------------------------------------------
    def vocabulary_size(self) -> int:
        return len(self.vocabulary)

    def get_vocabulary(self) -> list[str]:
        """Tokens ordered by id."""
        return [t for t, _ in sorted(self.vocabulary.items(), key=lambda item: item[1])]

    def token_to_id(self, token: str) -> int:
        if token not in self.vocabulary:
            raise KeyError(f"Token {token!r} is not in the vocabulary.")
        return self.vocabulary[token]

    def id_to_token(self, id: int) -> str:  # noqa: A002 - mirrors keras-hub's API
        if not 0 <= int(id) < len(self._id_to_token) or (
            self.vocabulary.get(self._id_to_token[int(id)]) != int(id)
        ):
            raise IndexError(f"Id {id} is not in the vocabulary.")
        return self._id_to_token[int(id)]

    # --- Tokenization --------------------------------------------------------------------------
    def _tokenize_flat(self, text: tf.Tensor) -> tf.RaggedTensor:
        """[n] strings -> [n, (ids)] int32."""
        text = self._check_utf8(text)
        if not self.unsplittable_tokens:
            return self._encode_pieces(text)
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
        normal_rows = self._encode_pieces(tf.where(is_special, tf.constant(""), flat))
        # Exactly one of the two rows is non-empty for each piece.
        ids = tf.concat([special_rows, normal_rows], axis=1)
        return pieces.with_flat_values(ids).merge_dims(1, 2)

    def _encode_pieces(self, text: tf.Tensor) -> tf.RaggedTensor:
        """[n] strings without special tokens -> [n, (ids)]."""
        if self.add_prefix_space:
            needs_space = (tf.strings.length(text) > 0) & (tf.strings.substr(text, 0, 1) != " ")
            text = tf.where(needs_space, tf.strings.join([" ", text]), text)
        words = self._pretokenize(text)
        # BPE each distinct word once (the batch-level equivalent of GPT-2's cache).
        unique_words, index = tf.unique(words.flat_values)
        word_ids = tf.gather(self._bpe(unique_words), index)
        return words.with_flat_values(word_ids).merge_dims(1, 2)

    def _pretokenize(self, text: tf.Tensor) -> tf.RaggedTensor:
        """[n] strings -> [n, (words)] exactly as GPT-2's regex (with its lookahead) splits."""
        # Pass 1: find the cuts of `\s+(?!\S)`: before the last character of each whitespace
        # run of 2+ characters that is followed by something (necessarily a non-space).
        safe = _nul_free(text)
        run_begins, run_ends = _split_offsets(safe, _WHITESPACE_RUN)
        runs = _substrings(safe, run_begins, run_ends)
        flat_runs = runs.flat_values
        run_chars = tf.strings.length(flat_runs, unit="UTF8_CHAR")
        last_char = tf.strings.substr(
            flat_runs, tf.maximum(run_chars - 1, 0), tf.ones_like(run_chars), unit="UTF8_CHAR"
        )
        is_last_piece = tf.equal(
            tf.range(tf.size(flat_runs, out_type=tf.int64)) + 1,
            tf.gather(runs.row_splits[1:], runs.value_rowids()),
        )
        is_cut = (
            tf.strings.regex_full_match(flat_runs, _WHITESPACE_RUN)
            & (run_chars >= 2)
            & ~is_last_piece
        )
        cut_positions = run_ends.flat_values - tf.cast(tf.strings.length(last_char), tf.int64)
        cuts = tf.ragged.boolean_mask(
            runs.with_flat_values(cut_positions), runs.with_flat_values(is_cut)
        )
        # Pass 2: the regex without lookahead on the segments between cuts.
        n = tf.shape(text, out_type=tf.int64)[0]
        lengths = tf.cast(tf.strings.length(text), tf.int64)
        zeros = tf.RaggedTensor.from_tensor(tf.zeros([n, 1], tf.int64))
        seg_begins = tf.concat([zeros, cuts], axis=1)
        seg_ends = tf.concat([cuts, tf.RaggedTensor.from_tensor(tf.expand_dims(lengths, 1))], 1)
        segments = _substrings(safe, seg_begins, seg_ends)
        word_begins, word_ends = _split_offsets(segments.flat_values, _PRETOKENIZE_PATTERN)
        # Offsets back into the original text (the one that still has its NUL bytes).
        word_segments = word_begins.value_rowids()
        starts = word_begins.flat_values + tf.gather(seg_begins.flat_values, word_segments)
        words = tf.strings.substr(
            tf.gather(text, tf.gather(seg_begins.value_rowids(), word_segments)),
            starts,
            word_ends.flat_values - word_begins.flat_values,
        )
        words = word_begins.with_flat_values(words)
        return seg_begins.with_flat_values(words).merge_dims(1, 2)

    def _bpe(self, words: tf.Tensor) -> tf.RaggedTensor:
        """[w] words -> [w, (ids)] by GPT-2's merge loop, vectorized over the words.

        Each round merges, in every word, all non-overlapping occurrences (left to right) of its
        lowest-ranked pair: the same result as GPT-2's ``bpe`` and HF's priority queue.
        """
        num_words = tf.size(words, out_type=tf.int64)
        byte_values = tf.strings.unicode_decode(words, "ISO-8859-1")  # one code point per byte
        symbols = tf.gather(self._byte_ids, byte_values.flat_values)
        rows = byte_values.value_rowids()

        def body(symbols, rows, _):
            left, right = symbols[:-1], symbols[1:]
            pair_rows = rows[:-1]
            valid = tf.equal(pair_rows, rows[1:]) & (left >= 0) & (right >= 0)
            keys = tf.cast(left, tf.int64) * self._id_space + tf.cast(right, tf.int64)
            slots = tf.searchsorted(self._merge_keys, keys)
            slots = tf.minimum(slots, tf.size(self._merge_keys) - 1)
            found = valid & tf.equal(tf.gather(self._merge_keys, slots), keys)
            ranks = tf.where(found, tf.gather(self._merge_key_ranks, slots), _MAX_RANK)
            best = tf.math.unsorted_segment_min(ranks, pair_rows, num_words)
            candidate = found & tf.equal(ranks, tf.gather(best, pair_rows))
            # Overlaps only happen in runs like "a a a" for the pair "a a": keep every other one.
            positions = tf.range(tf.size(candidate))
            run_start = candidate & ~tf.concat([[False], candidate[:-1]], axis=0)
            run_index = tf.maximum(tf.cumsum(tf.cast(run_start, tf.int32)) - 1, 0)
            start_position = tf.gather(
                tf.concat([tf.boolean_mask(positions, run_start), [0]], axis=0), run_index
            )
            selected = candidate & tf.equal((positions - start_position) % 2, 0)
            merged_ids = tf.gather(self._merged_ids, tf.where(selected, ranks, 0))
            merged = tf.where(selected, merged_ids, left)
            symbols = tf.concat([merged, symbols[-1:]], axis=0)
            keep = ~tf.concat([[False], selected], axis=0)
            return (
                tf.boolean_mask(symbols, keep),
                tf.boolean_mask(rows, keep),
                tf.reduce_any(selected),
            )

        symbols, rows, _ = tf.while_loop(
            lambda symbols, rows, more: more,
            body,
            (symbols, rows, tf.size(symbols) > 1),
            shape_invariants=(
                tf.TensorShape([None]),
                tf.TensorShape([None]),
                tf.TensorShape([]),
            ),
        )
        known = symbols >= 0
        return tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(symbols, known), tf.boolean_mask(rows, known), nrows=num_words
        )

    def tokenize(self, inputs: Any) -> tf.Tensor | tf.RaggedTensor:
        """Strings [batch] -> ragged int32 ids [batch, (tokens)]; a scalar -> dense [tokens].

        With ``sequence_length`` the result is dense ``[batch, sequence_length]`` (0-padded).
        """
        inputs = tf.convert_to_tensor(inputs, dtype=tf.string)
        rank = inputs.shape.rank
        if rank is None:
            raise ValueError("BytePairTokenizer needs inputs of known rank.")
        result = self._tokenize_flat(tf.reshape(inputs, [-1]))
        if self.sequence_length is not None:
            result = result.to_tensor(shape=[None, self.sequence_length])
            if rank == 0:
                return result[0]
            return tf.reshape(result, tf.concat([tf.shape(inputs), [self.sequence_length]], axis=0))
        if rank == 0:
            return result[0]
        # Higher ranks: restore the outer dense dims over the flattened strings.
        for axis in range(rank - 1, 0, -1):
            result = tf.RaggedTensor.from_uniform_row_length(
                result, tf.shape(inputs, out_type=tf.int64)[axis]
            )
        return result

    def detokenize(self, ids: Any) -> tf.Tensor:
        """Ids [..., (tokens)] (ragged or dense) -> the UTF-8 bytes they stand for, [...].

        Exact inverse of ``tokenize`` (padding ids added by ``sequence_length`` are not
        removed; GPT-2 has no padding token).
        """
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        pieces = tf.gather(self._decoded_tokens, ids)
        if isinstance(pieces, tf.RaggedTensor) or pieces.shape.rank >= 1:
            return tf.strings.reduce_join(pieces, axis=-1)
        return pieces


def _nul_free(text: tf.Tensor) -> tf.Tensor:
    """tf-text's regex_split stops at a NUL byte: use \\x01 (same regex classes, same length)."""
    return tf.strings.regex_replace(text, r"\x00", "\x01")


def _split_offsets(text: tf.Tensor, pattern: str) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
    """Byte offsets [n, (pieces)] of the matches of ``pattern`` and of the text between them."""
    _, begins, ends = tf_text.regex_split_with_offsets(
        text, delim_regex_pattern=pattern, keep_delim_regex_pattern=pattern
    )
    return begins, ends


def _substrings(text: tf.Tensor, begins: tf.RaggedTensor, ends: tf.RaggedTensor) -> tf.RaggedTensor:
    """text [n], offsets [n, (k)] -> [n, (k)] substrings."""
    flat = tf.strings.substr(
        tf.gather(text, begins.value_rowids()),
        begins.flat_values,
        ends.flat_values - begins.flat_values,
    )
    return begins.with_flat_values(flat)


