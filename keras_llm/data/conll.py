"""CoNLL-2003 style named-entity data: column files, IOB tags and word-piece alignment.

A CoNLL file has one token a line, the word in the first column and the NER tag in the last
(English CoNLL-2003: ``word POS chunk NER``), sentences separated by blank lines and documents
by ``-DOCSTART-`` lines. The English release tags in IOB1 (``I-`` opens an entity unless it
continues one of the same type); `read_conll` converts to IOB2, where every entity starts
with ``B-``.

For BERT the words are split into word pieces inside the TensorFlow graph; each word's label
sits on its first piece, every other position (later pieces, ``[CLS]``, ``[SEP]``, padding)
carries the ignore label ``-1`` and sample weight 0. `conll_dataset` builds the ``tf.data``
pipeline and `tags_from_predictions` maps per-token predictions back to one tag per word for
entity-level scoring.

Example:
>>> iob1_to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC"])
['B-PER', 'I-PER', 'O', 'B-LOC', 'B-LOC']
>>> label_names_from_tags([["B-PER", "O", "B-LOC"]])
['O', 'B-LOC', 'I-LOC', 'B-PER', 'I-PER']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from keras_llm.data.pipeline import shuffle_epochs

IGNORE_LABEL = -1
"""The label of positions that carry none (later word pieces, special tokens, padding)."""

DOCSTART = "-DOCSTART-"
_TAG = re.compile(r"^(?:O|[BI]-\S+)$")


def _check_tag(tag: str) -> None:
    if not _TAG.match(tag):
        raise ValueError(
            f"{tag!r} is not an IOB tag: expected 'O', 'B-TYPE' or 'I-TYPE' (e.g. 'B-PER')."
        )


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 (or IOB2) tags of one sentence -> IOB2, where every entity begins with ``B-``.

    An ``I-X`` becomes ``B-X`` when it does not continue an entity of type X (first word,
    after ``O``, or after a tag of another type); IOB2 input comes back unchanged.

    Example:
    >>> iob1_to_iob2(["I-ORG", "I-ORG", "I-PER", "O", "I-MISC"])
    ['B-ORG', 'I-ORG', 'B-PER', 'O', 'B-MISC']
    """
    converted = []
    previous = "O"
    for tag in tags:
        _check_tag(tag)
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        converted.append(tag)
        previous = tag
    return converted


def label_names_from_tags(tag_sequences: Sequence[Sequence[str]]) -> list[str]:
    """The label list for a tag set: ``"O"`` first, then ``B-X``, ``I-X`` for each type X in
    sorted order (both prefixes for every type seen, so any valid IOB2 tag has an id).

    Example:
    >>> label_names_from_tags([["B-ORG", "I-ORG"], ["O", "B-LOC"]])
    ['O', 'B-LOC', 'I-LOC', 'B-ORG', 'I-ORG']
    """
    types = set()
    for tags in tag_sequences:
        for tag in tags:
            _check_tag(tag)
            if tag != "O":
                types.add(tag[2:])
    return ["O"] + [f"{prefix}-{kind}" for kind in sorted(types) for prefix in ("B", "I")]


def read_conll(
    path: str | Path,
    label_names: Sequence[str] | None = None,
    iob1: bool = True,
) -> tuple[list[list[str]], list[list[str]]]:
    """Reads a CoNLL column file into `(sentences, tags)`: lists of words and of IOB2 tags.

    Args:
        path: the file (e.g. ``conll2003/eng.train``).
        label_names: if given, every (converted) tag must be one of these.
        iob1: the file uses IOB1 and is converted to IOB2 (harmless on IOB2 files).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: naming ``file:line``, for a token line whose column count differs from
            the file's first token line, a line with one column (no tag), a tag that is not
            IOB, a tag outside `label_names`, or a file without sentences.

    Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.conll")
    >>> text = "-DOCSTART- -X- O O\\n\\nEU NNP I-NP I-ORG\\nrejects VBZ I-VP O\\n"
    >>> _ = open(path, "w").write(text)
    >>> read_conll(path)
    ([['EU', 'rejects']], [['B-ORG', 'O']])
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CoNLL file not found: {path}.")
    label_set = set(label_names) if label_names is not None else None
    sentences: list[list[str]] = []
    all_tags: list[list[str]] = []
    words: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    expected_columns: tuple[int, int] | None = None  # (count, line where it was seen)

    def end_sentence() -> None:
        if not words:
            return
        converted = iob1_to_iob2(tags) if iob1 else list(tags)
        if label_set is not None:
            for tag, original, line_number in zip(converted, tags, lines, strict=True):
                if tag not in label_set:
                    shown = f"{tag!r}" if tag == original else f"{tag!r} (IOB2 of {original!r})"
                    raise ValueError(
                        f"{path}:{line_number}: tag {shown} is not in the label set "
                        f"{sorted(label_set)}. Derive the labels from a file that has this "
                        "entity type (label_names_from_tags) or correct the tag."
                    )
        sentences.append(list(words))
        all_tags.append(converted)
        words.clear()
        tags.clear()
        lines.clear()

    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, 1):
            columns = line.split()
            if not columns:
                end_sentence()
                continue
            if columns[0] == DOCSTART:
                end_sentence()
                continue
            if len(columns) < 2:
                raise ValueError(
                    f"{path}:{line_number}: one column ({line.strip()!r}); a CoNLL token line "
                    "holds the word first and the NER tag last, separated by whitespace."
                )
            if expected_columns is None:
                expected_columns = (len(columns), line_number)
            elif len(columns) != expected_columns[0]:
                raise ValueError(
                    f"{path}:{line_number}: {len(columns)} columns where {expected_columns[0]} "
                    f"are expected (as on line {expected_columns[1]}); every token line needs "
                    "the same columns, the word first and the NER tag last."
                )
            tag = columns[-1]
            if not _TAG.match(tag):
                raise ValueError(
                    f"{path}:{line_number}: {tag!r} in the last column is not an IOB tag: "
                    "expected 'O', 'B-TYPE' or 'I-TYPE' (the NER tag must be the last column)."
                )
            words.append(columns[0])
            tags.append(tag)
            lines.append(line_number)
    end_sentence()
    if not sentences:
        raise ValueError(f"{path} holds no sentences (no token lines).")
    return sentences, all_tags


def tags_to_ids(
    tag_sequences: Sequence[Sequence[str]], label_names: Sequence[str]
) -> list[list[int]]:
    """Tag strings -> ids in `label_names`; an unknown tag names its sentence and word."""
    index = {name: i for i, name in enumerate(label_names)}
    ids = []
    for sentence_number, tags in enumerate(tag_sequences):
        row = []
        for word_number, tag in enumerate(tags):
            if tag not in index:
                raise ValueError(
                    f"Sentence {sentence_number}, word {word_number}: tag {tag!r} is not in the "
                    f"label set {list(label_names)}; derive the labels from data that has it."
                )
            row.append(index[tag])
        ids.append(row)
    return ids


def _tokenizer_and_length(preprocessor: Any, sequence_length: int | None) -> tuple[Any, int]:
    tokenizer = getattr(preprocessor, "tokenizer", preprocessor)
    length = sequence_length or getattr(preprocessor, "sequence_length", None)
    if length is None:
        raise ValueError(
            "Pass `sequence_length` when giving a tokenizer rather than a BertPreprocessor."
        )
    if int(length) < 3:
        raise ValueError(f"`sequence_length` must be >= 3 ([CLS] word [SEP]), got {length}.")
    return tokenizer, int(length)


# Plain TensorFlow ops without Python control flow on tensors: AutoGraph need not (and, through
# the tokenizer's helper methods, must not) rewrite it when it runs inside `Dataset.map`.
@tf.autograph.experimental.do_not_convert
def align_word_labels(
    words: tf.RaggedTensor,
    label_ids: tf.RaggedTensor | None,
    preprocessor: Any,
    sequence_length: int | None = None,
) -> dict[str, tf.Tensor]:
    """Tokenizes pre-split words in the graph and puts each word's label on its first piece.

    Args:
        words: ``[batch, (words)]`` strings.
        label_ids: ``[batch, (words)]`` int label ids, or ``None`` (prediction).
        preprocessor: a `BertPreprocessor` (its tokenizer and sequence length), or a
            `WordPieceTokenizer` with `sequence_length`.
        sequence_length: overrides the preprocessor's.

    Returns:
        ``token_ids``, ``segment_ids``, ``padding_mask`` (``[batch, sequence_length]``, as
        `BertPreprocessor` packs ``[CLS] pieces [SEP]``); ``word_positions`` (``[batch,
        (words)]`` int32: the position of each word's first piece, or -1 for a word that
        tokenizes to nothing or is cut by truncation); with `label_ids`, ``labels``
        (``[batch, sequence_length]`` int32, `IGNORE_LABEL` off first pieces) and
        ``sample_weight`` (1.0 on labelled positions, else 0.0).

    Example:
    >>> from keras_llm.tokenizers import BertPreprocessor, WordPieceTokenizer
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "new", "york", "##er", "is"]
    >>> pre = BertPreprocessor(WordPieceTokenizer(vocab), sequence_length=7)
    >>> out = align_word_labels(tf.ragged.constant([["New", "Yorker"]]),
    ...                         tf.ragged.constant([[1, 2]]), pre)
    >>> out["token_ids"].numpy().tolist()
    [[2, 4, 5, 6, 3, 0, 0]]
    >>> out["labels"].numpy().tolist()
    [[-1, 1, 2, -1, -1, -1, -1]]
    >>> out["word_positions"].to_list()
    [[1, 2]]
    """
    tokenizer, length = _tokenizer_and_length(preprocessor, sequence_length)
    cls_id = tokenizer.special_token_id("cls")
    sep_id = tokenizer.special_token_id("sep")
    pad_id = tokenizer.special_token_id("pad")
    budget = length - 2
    if not isinstance(words, tf.RaggedTensor):
        words = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(words, tf.string))
    pieces = tokenizer.tokenize(words.flat_values)  # [all words, (pieces)]
    counts = tf.cast(pieces.row_lengths(), tf.int32)
    # Offset of each word's first piece inside its sentence.
    flat_starts = tf.cumsum(counts, exclusive=True)
    sentence_starts = tf.gather(
        tf.concat([flat_starts, [tf.reduce_sum(counts)]], 0), words.row_starts()
    )
    offsets = flat_starts - tf.gather(sentence_starts, words.value_rowids())
    labelled = tf.logical_and(counts > 0, offsets < budget)
    flat_positions = tf.where(labelled, offsets + 1, IGNORE_LABEL)  # +1 for [CLS]
    tokens = words.with_flat_values(pieces).merge_dims(1, 2)[:, :budget]
    batch = tokens.nrows(out_type=tf.int32)
    cls_col = tf.fill([batch, 1], tf.constant(cls_id, tf.int32))
    sep_col = tf.fill([batch, 1], tf.constant(sep_id, tf.int32))
    packed = tf.concat([cls_col, tf.cast(tokens, tf.int32), sep_col], axis=1)
    shape = [None, length]
    outputs = {
        "token_ids": packed.to_tensor(pad_id, shape=shape),
        "segment_ids": tf.zeros_like(packed).to_tensor(0, shape=shape),
        "padding_mask": tf.ones_like(packed, tf.bool).to_tensor(False, shape=shape),
        "word_positions": words.with_flat_values(flat_positions),
    }
    if label_ids is not None:
        if not isinstance(label_ids, tf.RaggedTensor):
            label_ids = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(label_ids))
        tf.debugging.assert_equal(
            tf.cast(label_ids.row_lengths(), tf.int64), tf.cast(words.row_lengths(), tf.int64),
            message="align_word_labels: every sentence needs exactly one label id per word.")
        rows = tf.cast(words.value_rowids(), tf.int32)
        indices = tf.stack(
            [tf.boolean_mask(rows, labelled), tf.boolean_mask(flat_positions, labelled)], axis=1
        )
        updates = tf.boolean_mask(tf.cast(label_ids.flat_values, tf.int32), labelled)
        labels = tf.tensor_scatter_nd_update(
            tf.fill([batch, length], tf.constant(IGNORE_LABEL, tf.int32)), indices, updates
        )
        outputs["labels"] = labels
        outputs["sample_weight"] = tf.cast(labels != IGNORE_LABEL, tf.float32)
    return outputs


_MODEL_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def _checked_label_ids(
    sentences: Sequence[Sequence[str]],
    tags: Sequence[Sequence[str]] | None,
    label_names: Sequence[str] | None,
) -> list[list[int]]:
    if not sentences:
        raise ValueError("No sentences given.")
    if isinstance(sentences[0], str):
        raise ValueError("`sentences` must be lists of words, e.g. [['EU', 'rejects']].")
    if tags is None:
        return [[IGNORE_LABEL] * len(words) for words in sentences]
    if label_names is None:
        raise ValueError("Pass `label_names` with `tags` (e.g. label_names_from_tags(train)).")
    if len(tags) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(tags)} tag sequences.")
    for number, (words, sentence_tags) in enumerate(zip(sentences, tags, strict=True)):
        if len(words) != len(sentence_tags):
            raise ValueError(
                f"Sentence {number}: {len(words)} words but {len(sentence_tags)} tags."
            )
    return tags_to_ids(tags, label_names)


def _chunks(
    sentences: Sequence[Sequence[str]], ids: list[list[int]], chunk_size: int = 256
) -> tf.data.Dataset:
    words = tf.ragged.constant([list(s) for s in sentences], dtype=tf.string, ragged_rank=1)
    label_ids = tf.ragged.constant(ids, dtype=tf.int32, ragged_rank=1)
    return tf.data.Dataset.from_tensor_slices((words, label_ids)).ragged_batch(chunk_size)


def conll_dataset(
    sentences: Sequence[Sequence[str]],
    tags: Sequence[Sequence[str]] | None,
    preprocessor: Any,
    label_names: Sequence[str] | None = None,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
    sequence_length: int | None = None,
    pad_to_multiple_of: int | None = None,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of word-piece inputs and first-piece labels.

    The words are tokenized once in the graph (in chunks of 256 sentences) and cached; with
    `shuffle` the examples repeat endlessly, reshuffled every epoch from `seed` (a pure
    function of the position, so a resumed run that skips batches, or one on several
    replicas, sees the same data).

    Args:
        sentences: lists of words.
        tags: one IOB2 tag per word (with `label_names`): the dataset yields ``(inputs,
            labels, sample_weight)``, labels `IGNORE_LABEL` and weight 0 off first pieces;
            ``None``: it yields the inputs alone.
        preprocessor: a `BertPreprocessor` (or a `WordPieceTokenizer` and `sequence_length`).
        label_names: the tag list; a tag's id is its index.
        batch_size: examples per batch (global).
        shuffle: repeat the examples, shuffled (before batching) every epoch.
        seed: the shuffle seed.
        drop_remainder: drop a last partial batch.
        sequence_length: overrides the preprocessor's.
        pad_to_multiple_of: pad each batch only to its longest row rounded up to a multiple
            of this (at most `sequence_length`), not to `sequence_length`: far less compute on
            short sentences, and at most ``sequence_length / pad_to_multiple_of`` shapes.

    Example:
    >>> from keras_llm.tokenizers import BertPreprocessor, WordPieceTokenizer
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "eu", "rejects"]
    >>> pre = BertPreprocessor(WordPieceTokenizer(vocab), sequence_length=6)
    >>> ds = conll_dataset([["EU", "rejects"]], [["B-ORG", "O"]], pre, ["O", "B-ORG", "I-ORG"])
    >>> inputs, labels, weights = next(iter(ds))
    >>> labels.numpy().tolist(), weights.numpy().tolist()
    ([[-1, 1, 0, -1, -1, -1]], [[0.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    """
    ids = _checked_label_ids(sentences, tags, label_names)
    tokenizer, length = _tokenizer_and_length(preprocessor, sequence_length)

    def encode(chunk_words, chunk_ids):
        out = align_word_labels(chunk_words, chunk_ids, tokenizer, length)
        inputs = {name: out[name] for name in _MODEL_INPUTS}
        if tags is None:
            return inputs
        return inputs, out["labels"], out["sample_weight"]

    dataset = _chunks(sentences, ids).map(encode).unbatch().cache()
    if shuffle:  # Endless, in an order fixed by the seed and the position alone.
        dataset = shuffle_epochs(dataset, seed)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if pad_to_multiple_of:
        multiple = _checked_multiple(pad_to_multiple_of)

        def trim(*elements):
            inputs = elements[0]  # (inputs, labels, weights) or (inputs,)
            real = tf.reduce_max(tf.reduce_sum(tf.cast(inputs["padding_mask"], tf.int32), 1))
            width = tf.clip_by_value(-(-real // multiple) * multiple, 1, length)
            trimmed = tf.nest.map_structure(lambda t: t[:, :width], elements)
            return trimmed if len(trimmed) > 1 else trimmed[0]

        dataset = dataset.map(trim)
    return dataset.prefetch(2)


def _checked_multiple(value: int) -> int:
    if int(value) < 1:
        raise ValueError(f"`pad_to_multiple_of` must be a positive integer, got {value}.")
    return int(value)


def encode_sentences(
    sentences: Sequence[Sequence[str]],
    preprocessor: Any,
    sequence_length: int | None = None,
) -> tuple[dict[str, np.ndarray], list[list[int]]]:
    """Model inputs for sentences (numpy, ``[n, sequence_length]``) and each word's
    first-piece position (-1: no piece, or cut by truncation), for `tags_from_predictions`.

    Example:
    >>> from keras_llm.tokenizers import BertPreprocessor, WordPieceTokenizer
    >>> pre = BertPreprocessor(WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "eu"]), 4)
    >>> inputs, positions = encode_sentences([["EU", "EU", "EU"]], pre)
    >>> inputs["token_ids"].tolist(), positions
    ([[2, 4, 4, 3]], [[1, 2, -1]])
    """
    ids = _checked_label_ids(sentences, None, None)
    tokenizer, length = _tokenizer_and_length(preprocessor, sequence_length)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _MODEL_INPUTS}
    positions: list[list[int]] = []
    for chunk_words, _ in _chunks(sentences, ids, chunk_size=1024):
        out = align_word_labels(chunk_words, None, tokenizer, length)
        for name in _MODEL_INPUTS:
            parts[name].append(out[name].numpy())
        positions += out["word_positions"].to_list()
    return {name: np.concatenate(values) for name, values in parts.items()}, positions


def tags_from_predictions(
    predictions: Any,
    word_positions: Any,
    label_names: Sequence[str],
    fill: str = "O",
) -> list[list[str]]:
    """Per-token predictions -> one tag per word, read at each word's first piece.

    Args:
        predictions: ``[batch, seq]`` label ids or ``[batch, seq, num_labels]`` logits.
        word_positions: ``[batch, (words)]`` first-piece positions (a ragged tensor, or lists),
            -1 for words without a piece.
        label_names: id -> tag.
        fill: the tag of words without a piece (empty after tokenization, or truncated).

    Example:
    >>> tags_from_predictions([[0, 1, 2, 2, 0]], [[1, 3, -1]], ["O", "B-PER", "I-PER"])
    [['B-PER', 'I-PER', 'O']]
    """
    predictions = np.asarray(predictions)
    if predictions.ndim == 3:
        predictions = predictions.argmax(-1)
    if predictions.ndim != 2:
        raise ValueError(
            "`predictions` must be [batch, seq] ids or [batch, seq, labels] logits; "
            f"got shape {predictions.shape}."
        )
    if isinstance(word_positions, tf.RaggedTensor):
        word_positions = word_positions.to_list()
    if len(word_positions) != len(predictions):
        raise ValueError(
            f"{len(predictions)} prediction rows but {len(word_positions)} word-position rows."
        )
    names = list(label_names)
    result = []
    for row, positions in zip(predictions, word_positions, strict=True):
        result.append([names[int(row[p])] if p >= 0 else fill for p in positions])
    return result


def predict_word_tags(
    model: Any,
    sentences: Sequence[Sequence[str]],
    preprocessor: Any,
    label_names: Sequence[str],
    batch_size: int = 64,
    predict: Any = None,
    pad_to_multiple_of: int | None = None,
) -> tuple[list[list[str]], int]:
    """Runs a token classifier over sentences; returns `(word tags, words without a piece)`.

    Words cut by truncation or without any word piece are tagged ``"O"`` and counted.

    Args:
        model: a token classifier (``[batch, seq, num_labels]`` logits).
        sentences: lists of words.
        preprocessor: a `BertPreprocessor`.
        label_names: id -> tag, as in training.
        batch_size: sentences per prediction batch.
        predict: ``predict(model, dataset) -> logits``; defaults to ``model.predict``.
        pad_to_multiple_of: group the sentences by length, padded to a multiple of this (one
            `predict` call per group) instead of all to the sequence length.

    Example:
    >>> import keras_llm
    >>> from keras_llm.tokenizers import BertPreprocessor, WordPieceTokenizer
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "eu", "rejects"]
    >>> pre = BertPreprocessor(WordPieceTokenizer(vocab), sequence_length=6)
    >>> bert = keras_llm.models.Bert.from_preset("bert_tiny", vocab_size=len(vocab))
    >>> tagger = keras_llm.models.BertTokenClassifier(bert, num_classes=3)
    >>> tags, missing = predict_word_tags(tagger, [["EU", "rejects"]], pre, ["O", "B-ORG", "I-ORG"])
    >>> len(tags[0]), missing
    (2, 0)
    """
    inputs, positions = encode_sentences(sentences, preprocessor)
    predict = predict or (lambda m, d: m.predict(d, verbose=0))
    count, length = inputs["token_ids"].shape
    widths = np.full([count], length)
    if pad_to_multiple_of:
        multiple = _checked_multiple(pad_to_multiple_of)
        real = inputs["padding_mask"].sum(1)
        widths = np.clip(-(-real // multiple) * multiple, 1, length)
    predicted = np.zeros([count, length], np.int64)
    for width in np.unique(widths):
        rows = np.flatnonzero(widths == width)
        group = {name: value[rows, :width] for name, value in inputs.items()}
        logits = np.asarray(predict(model, tf.data.Dataset.from_tensor_slices(group)
                                    .batch(batch_size)))
        if logits.ndim != 3 or logits.shape[:2] != (len(rows), width):
            raise ValueError(
                f"The model returned {logits.shape} for inputs {(len(rows), width)}; "
                "expected per-token logits [batch, sequence_length, num_labels]."
            )
        predicted[rows, :width] = logits.argmax(-1)
    missing = sum(p < 0 for row in positions for p in row)
    return tags_from_predictions(predicted, positions, label_names), missing
