"""SQuAD v1.1 / v2.0 for extractive question answering: reading, windowed features, decoding.

The three steps of a BERT SQuAD pipeline, over the files of the SQuAD site
(`train-v1.1.json`, `dev-v1.1.json`, `train-v2.0.json`, `dev-v2.0.json`):

1. `read_squad_examples`: one `SquadExample` per question. The file's structure is checked
   (a missing file, invalid JSON or a missing key raises `SquadDataError` naming the file, the
   article and the question id). An answer whose text is not the context's text at its
   `answer_start` is reported (a warning, and `SquadExample.mismatched_answers`) and is not
   used as a training target, as the original scripts do; a question left with no usable
   answer is skipped in training.
2. `create_squad_features`: the question, cut to `max_query_length` tokens, and windows of the
   context (a new window every `doc_stride` tokens) packed as `[CLS] question [SEP] context
   [SEP]`. Answers are mapped from characters to tokens through the tokenizer's offsets
   (`WordPieceTokenizer.tokenize_with_offsets`), so each token knows the original characters
   it came from; a window without the answer, or an unanswerable question, points at `[CLS]`
   (position 0).
3. `postprocess_squad`: the n best spans of every window of a question, limited to
   `max_answer_length` tokens and to tokens that have their most context in that window; the
   answer is the ORIGINAL context substring under the span. For SQuAD v2.0 the no-answer score
   (`[CLS]`'s, the lowest over the windows) is compared with the best span's, with a
   threshold. `write_squad_predictions` writes `predictions.json`, `nbest_predictions.json`
   and, for v2.0, `null_odds.json`, in the official formats.

Scoring is `keras_llm.metrics.evaluate_squad` (the official EM and F1).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from keras_llm.tokenizers.word_piece_tokenizer import WordPieceTokenizer


class SquadDataError(ValueError):
    """A SQuAD file is missing, is not JSON, or lacks a key (the file, article, question named)."""


# --- Reading --------------------------------------------------------------------------------
@dataclasses.dataclass
class SquadExample:
    """One SQuAD question with its context.

    Args:
        qas_id: the question id (the key of `predictions.json`).
        question: the question text.
        context: the paragraph the answer comes from.
        answers: `(text, answer_start)` of every ground-truth answer, as in the file;
            `answer_start` counts characters (Python `str` indices) into `context`.
        is_impossible: SQuAD v2.0: the question has no answer in the context.
        title: the article's title.
        answer_index: the answer used as the training target: the first one whose text is
            the context's text at its `answer_start`; `None` if there is none.
        mismatched_answers: indices into `answers` of the answers whose text does not match
            the context at their `answer_start`.

    Example:
    >>> example = SquadExample("q1", "Where?", "In Paris.", [("Paris", 3)])
    >>> example.answer_span, example.answer_text
    ((3, 8), 'Paris')
    """

    qas_id: str
    question: str
    context: str
    answers: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    is_impossible: bool = False
    title: str = ""
    answer_index: int | None = None
    mismatched_answers: list[int] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.answer_index is None and not self.is_impossible and not self.mismatched_answers:
            self.mismatched_answers = [
                i for i, (text, start) in enumerate(self.answers)
                if self.context[start:start + len(text)] != text
            ]
            usable = [i for i in range(len(self.answers)) if i not in self.mismatched_answers]
            self.answer_index = usable[0] if usable else None

    @property
    def answer_span(self) -> tuple[int, int] | None:
        """`(start, end)` characters of the training answer (end exclusive), or `None`."""
        if self.is_impossible or self.answer_index is None:
            return None
        text, start = self.answers[self.answer_index]
        return start, start + len(text)

    @property
    def answer_text(self) -> str | None:
        """The training answer's text (`""` for an unanswerable question), or `None`."""
        if self.is_impossible:
            return ""
        return None if self.answer_index is None else self.answers[self.answer_index][0]


def read_squad_file(path: str | os.PathLike) -> dict[str, Any]:
    """Loads a SQuAD JSON file: `{"version": ..., "data": [articles]}`.

    Raises `FileNotFoundError` for a missing file and `SquadDataError` for invalid JSON (with
    its line and column) or a file without a `data` list of articles.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SQuAD file not found: '{path}'. Pass the path of a SQuAD JSON file such as "
            "train-v1.1.json or dev-v2.0.json (from https://rajpurkar.github.io/SQuAD-explorer/)."
        )
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise SquadDataError(
                f"{path}, line {error.lineno}, column {error.colno}: not valid JSON "
                f"({error.msg}). Is the file complete (not truncated by the download)?"
            ) from error
        except UnicodeDecodeError as error:
            raise SquadDataError(f"{path}: not UTF-8 text ({error}).") from error
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise SquadDataError(
            f"{path}: a SQuAD file is a JSON object with a 'data' list of articles "
            "({'version': ..., 'data': [{'title': ..., 'paragraphs': [...]}]}); this one has "
            f"{'keys ' + str(sorted(data)) if isinstance(data, dict) else type(data).__name__}."
        )
    return data


def _require(mapping: Any, key: str, kind: type | tuple[type, ...], where: str, what: str) -> Any:
    if not isinstance(mapping, dict):
        raise SquadDataError(f"{where}: {what} must be a JSON object, got "
                             f"{type(mapping).__name__}.")
    if key not in mapping:
        raise SquadDataError(f"{where}: {what} has no '{key}' key (keys: {sorted(mapping)}).")
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise SquadDataError(f"{where}: '{key}' of {what} must be {names}, got "
                             f"{type(value).__name__} {value!r:.60}.")
    return value


def read_squad_examples(
    source: str | os.PathLike | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    version_2_with_negative: bool = False,
) -> list[SquadExample]:
    """One `SquadExample` per question of a SQuAD file, its loaded JSON, or its `data` list.

    Args:
        source: a file path, the file's JSON object, or its list of articles.
        version_2_with_negative: SQuAD v2.0: questions may be unanswerable (`is_impossible`,
            no answers). Without it an unanswerable question is an error that says so.

    Answers whose text does not match the context at `answer_start` are logged (each one,
    as the original scripts do) and listed in `mismatched_answers`; they are never a
    training target.

    Example:
    >>> data = {"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.",
    ...     "qas": [{"id": "q1", "question": "Where?",
    ...              "answers": [{"text": "France", "answer_start": 12}]}]}]}]}
    >>> [(e.qas_id, e.answer_text, e.answer_span) for e in read_squad_examples(data)]
    [('q1', 'France', (12, 18))]
    """
    name = "<data>"
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        source = read_squad_file(source)
    if isinstance(source, Mapping):
        articles = _require(dict(source), "data", list, name, "the SQuAD JSON")
    else:
        articles = list(source)
    examples = []
    for a, article in enumerate(articles):
        where = f"{name}, article {a}"
        title = article.get("title", "") if isinstance(article, dict) else ""
        if title:
            where += f" ({title!r})"
        paragraphs = _require(article, "paragraphs", list, where, "the article")
        for p, paragraph in enumerate(paragraphs):
            where_p = f"{where}, paragraph {p}"
            context = _require(paragraph, "context", str, where_p, "the paragraph")
            for q, qa in enumerate(_require(paragraph, "qas", list, where_p, "the paragraph")):
                where_q = f"{where_p}, question {q}"
                qas_id = str(_require(qa, "id", (str, int), where_q, "the question"))
                where_q = f"{where_p}, question id {qas_id!r}"
                question = _require(qa, "question", str, where_q, "the question")
                answers = _require(qa, "answers", list, where_q, "the question")
                is_impossible = bool(qa.get("is_impossible", False))
                if is_impossible and not version_2_with_negative:
                    raise SquadDataError(
                        f"{where_q}: the question is marked is_impossible (SQuAD v2.0). Pass "
                        "version_2_with_negative=True (--version_2_with_negative) for v2.0 data."
                    )
                parsed = []
                for n, answer in enumerate(answers):
                    where_a = f"{where_q}, answer {n}"
                    text = _require(answer, "text", str, where_a, "the answer")
                    start = _require(answer, "answer_start", int, where_a, "the answer")
                    parsed.append((text, start))
                if not parsed and not is_impossible:
                    if not version_2_with_negative:
                        raise SquadDataError(
                            f"{where_q}: the question has no answers. SQuAD v1.1 questions all "
                            "have one; for SQuAD v2.0 data pass version_2_with_negative=True "
                            "(--version_2_with_negative)."
                        )
                    is_impossible = True
                example = SquadExample(qas_id, question, context, [] if is_impossible else parsed,
                                       is_impossible, title)
                for n in example.mismatched_answers:
                    text, start = parsed[n]
                    logging.warning(
                        "Could not find answer %d of question %s (%s) at answer_start %d: %r "
                        "vs. %r in the context.", n, qas_id, where_p, start, text,
                        context[start:start + len(text)])
                examples.append(example)
    if not examples:
        raise SquadDataError(f"{name}: no questions found.")
    mismatched = sum(bool(e.mismatched_answers) for e in examples)
    if mismatched:
        unusable = sum(e.answer_span is None and not e.is_impossible for e in examples)
        logging.warning("%s: %d of %d questions have an answer that does not match the context "
                        "at its answer_start; %d have no usable answer (skipped in training).",
                        name, mismatched, len(examples), unusable)
    return examples


def select_articles(
    articles: Sequence[Mapping[str, Any]], question_ids: Iterable[str]
) -> list[dict[str, Any]]:
    """A copy of `articles` that keeps only the questions in `question_ids` (and drops emptied
    paragraphs and articles), to score a subset with `evaluate_squad`.

    Example:
    >>> data = [{"paragraphs": [{"context": "c", "qas": [{"id": "a"}, {"id": "b"}]}]}]
    >>> select_articles(data, ["b"])
    [{'paragraphs': [{'context': 'c', 'qas': [{'id': 'b'}]}]}]
    """
    keep = set(question_ids)
    selected = []
    for article in articles:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            qas = [qa for qa in paragraph["qas"] if str(qa["id"]) in keep]
            if qas:
                paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            selected.append({**article, "paragraphs": paragraphs})
    return selected


# --- Features ---------------------------------------------------------------------------------
@dataclasses.dataclass
class SquadFeatures:
    """Packed model inputs, one row per (question, context window), with what decoding needs.

    Args:
        token_ids, segment_ids, padding_mask: `[features, max_seq_length]` BERT inputs.
        start_positions, end_positions: `[features]` answer token positions; 0 (`[CLS]`) for
            a window without the answer and for unanswerable questions.
        example_index: `[features]` the index of each window's example.
        char_starts, char_ends: `[features, max_seq_length]` the context characters of each
            token (`context[start:end]`), -1 for the question, special tokens and padding.
        max_context: `[features, max_seq_length]` whether a context token has more context
            in this window than in any other window of its example.
        window_start: `[features]` the index of the window's first context token.

    Example:
    >>> features = SquadFeatures.empty(8)
    >>> len(features), sorted(features.inputs())
    (0, ['padding_mask', 'segment_ids', 'token_ids'])
    """

    token_ids: np.ndarray
    segment_ids: np.ndarray
    padding_mask: np.ndarray
    start_positions: np.ndarray
    end_positions: np.ndarray
    example_index: np.ndarray
    char_starts: np.ndarray
    char_ends: np.ndarray
    max_context: np.ndarray
    window_start: np.ndarray

    @classmethod
    def empty(cls, max_seq_length: int) -> SquadFeatures:
        """No features (every array with a first dimension of 0)."""
        square = np.zeros((0, max_seq_length), np.int32)
        line = np.zeros((0,), np.int32)
        return cls(square, square, square.astype(bool), line, line, line, square, square,
                   square.astype(bool), line)

    def __len__(self) -> int:
        return len(self.token_ids)

    def inputs(self) -> dict[str, np.ndarray]:
        """The model inputs: `token_ids`, `segment_ids`, `padding_mask`."""
        return {"token_ids": self.token_ids, "segment_ids": self.segment_ids,
                "padding_mask": self.padding_mask}

    def span_text(self, index: int, start: int, end: int, context: str) -> str:
        """The original `context` text under tokens `start..end` (inclusive) of feature `index`."""
        begin, finish = self.char_starts[index, start], self.char_ends[index, end]
        if begin < 0 or finish < 0:
            raise ValueError(f"Tokens {start}..{end} of feature {index} are not all context.")
        return context[begin:finish]


def _tokenize_with_offsets(tokenizer: WordPieceTokenizer, texts: Sequence[str],
                           chunk: int = 4096) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`(ids, char starts, char ends)` per text, tokenized in chunks (bounded memory).

    Eagerly: tracing the tokenizer costs more than running it op by op on a few large chunks.
    """
    results = []
    for begin in range(0, len(texts), chunk):
        ids, starts, ends = tokenizer.tokenize_with_offsets(
            tf.constant(list(texts[begin:begin + chunk]), tf.string), unit="UTF8_CHAR")
        splits = ids.row_splits.numpy()[1:-1]
        results.extend(zip(*(np.split(t.flat_values.numpy(), splits) for t in (ids, starts, ends)),
                           strict=True))
    return results


def char_span_to_token_span(
    token_starts: np.ndarray, token_ends: np.ndarray, char_start: int, char_end: int
) -> tuple[int, int] | None:
    """The first and last token overlapping characters `[char_start, char_end)`, or `None`.

    Example:
    >>> char_span_to_token_span(np.array([0, 6, 10]), np.array([5, 9, 12]), 6, 12)
    (1, 2)
    """
    overlapping = np.flatnonzero((token_ends > char_start) & (token_starts < char_end))
    if len(overlapping) == 0:
        return None
    return int(overlapping[0]), int(overlapping[-1])


def _window_starts(num_tokens: int, window: int, doc_stride: int) -> list[int]:
    """Starts of the windows of `window` tokens, `doc_stride` apart, that cover the context."""
    starts = [0]
    while starts[-1] + window < num_tokens:
        starts.append(starts[-1] + min(window, doc_stride))
    return starts


def create_squad_features(
    examples: Sequence[SquadExample],
    tokenizer: WordPieceTokenizer,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    is_training: bool = False,
    skip_windows_without_answer: bool = False,
) -> SquadFeatures:
    """Tokenizes and packs examples into windows `[CLS] question [SEP] context [SEP]`.

    Args:
        examples: from `read_squad_examples`.
        tokenizer: the model's `WordPieceTokenizer` (with `[CLS]`, `[SEP]`, `[PAD]`).
        max_seq_length: tokens per window, special tokens included.
        doc_stride: tokens between the starts of consecutive windows of a long context.
        max_query_length: questions are cut to this many tokens.
        is_training: skip examples without a usable answer (mismatched answer texts); the
            answer positions are filled for every example that has an answer either way.
        skip_windows_without_answer: with `is_training`, leave out the windows of an
            answerable question that do not hold its answer (by default they are kept and
            point at `[CLS]`, as in the original recipe). Unanswerable (v2.0) questions keep
            all their windows. Short fine-tunes with short windows learn faster without them.

    Example:
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "where", "?", "in", "paris", "."]
    >>> example = SquadExample("q1", "Where?", "In Paris.", [("Paris", 3)])
    >>> features = create_squad_features([example], WordPieceTokenizer(vocab), max_seq_length=10,
    ...                                  doc_stride=4, max_query_length=3)
    >>> features.token_ids[0].tolist()
    [2, 4, 5, 3, 6, 7, 8, 3, 0, 0]
    >>> int(features.start_positions[0]), features.span_text(0, 5, 5, example.context)
    (5, 'Paris')
    """
    max_tokens_for_doc = max_seq_length - max_query_length - 3
    if max_query_length < 1 or max_tokens_for_doc < 1:
        raise ValueError(
            f"max_seq_length={max_seq_length} leaves no room for the context after a question "
            f"of max_query_length={max_query_length} tokens and 3 special tokens; raise "
            "max_seq_length or lower max_query_length.")
    if not 1 <= doc_stride <= max_tokens_for_doc:
        raise ValueError(
            f"doc_stride={doc_stride} must be between 1 and max_seq_length - max_query_length "
            f"- 3 = {max_tokens_for_doc}, or windows would skip context tokens.")
    cls_id, sep_id = tokenizer.special_token_id("cls"), tokenizer.special_token_id("sep")
    pad_id = tokenizer.special_token_id("pad")
    if is_training:
        kept = [i for i, e in enumerate(examples) if e.is_impossible or e.answer_span is not None]
        if len(kept) < len(examples):
            logging.warning("%d of %d examples have no answer matching their context and are "
                            "skipped for training.", len(examples) - len(kept), len(examples))
    else:
        kept = list(range(len(examples)))
    if not kept:
        return SquadFeatures.empty(max_seq_length)

    questions = _tokenize_with_offsets(tokenizer, [examples[i].question for i in kept])
    context_ids = {}
    for i in kept:
        context_ids.setdefault(examples[i].context, len(context_ids))
    contexts = _tokenize_with_offsets(tokenizer, list(context_ids))

    rows: dict[str, list] = collections.defaultdict(list)
    for question, i in zip(questions, kept, strict=True):
        example = examples[i]
        query = question[0][:max_query_length]
        ids, starts, ends = contexts[context_ids[example.context]]
        window = max_seq_length - len(query) - 3
        answer = None
        if example.answer_span is not None:
            answer = char_span_to_token_span(starts, ends, *example.answer_span)
        offset = len(query) + 2  # Context token t of a window sits at offset + t - window start.
        window_starts = _window_starts(len(ids), window, doc_stride)
        for begin in window_starts:
            length = min(window, len(ids) - begin)
            token_ids = np.full(max_seq_length, pad_id, np.int32)
            packed = np.concatenate([[cls_id], query, [sep_id], ids[begin:begin + length],
                                     [sep_id]])
            token_ids[:len(packed)] = packed
            segment_ids = np.zeros(max_seq_length, np.int32)
            segment_ids[offset:len(packed)] = 1
            char_starts = np.full(max_seq_length, -1, np.int32)
            char_ends = np.full(max_seq_length, -1, np.int32)
            char_starts[offset:offset + length] = starts[begin:begin + length]
            char_ends[offset:offset + length] = ends[begin:begin + length]
            max_context = np.zeros(max_seq_length, bool)
            max_context[offset:offset + length] = _has_max_context(
                window_starts, window, len(ids), begin, length)
            start_position = end_position = 0
            if answer is not None and begin <= answer[0] and answer[1] < begin + length:
                start_position = offset + answer[0] - begin
                end_position = offset + answer[1] - begin
            elif is_training and skip_windows_without_answer and not example.is_impossible:
                continue
            rows["token_ids"].append(token_ids)
            rows["segment_ids"].append(segment_ids)
            rows["padding_mask"].append(np.arange(max_seq_length) < len(packed))
            rows["start_positions"].append(start_position)
            rows["end_positions"].append(end_position)
            rows["example_index"].append(i)
            rows["char_starts"].append(char_starts)
            rows["char_ends"].append(char_ends)
            rows["max_context"].append(max_context)
            rows["window_start"].append(begin)
    if not rows:
        return SquadFeatures.empty(max_seq_length)
    return SquadFeatures(**{
        name: np.asarray(values, bool if name in ("padding_mask", "max_context") else np.int32)
        for name, values in rows.items()
    })


def _has_max_context(window_starts: list[int], window: int, num_tokens: int, begin: int,
                     length: int) -> np.ndarray:
    """For the tokens of window `begin`: is this their best window? A token's context in a
    window is min(tokens left of it, tokens right of it) + 0.01 * window length; ties go to
    the earlier window (the original BERT rule)."""
    positions = np.arange(begin, begin + length)
    best_score = np.full(length, -np.inf)
    best_start = np.full(length, -1)
    for start in window_starts:
        span = min(window, num_tokens - start)
        inside = (positions >= start) & (positions < start + span)
        score = np.minimum(positions - start, start + span - 1 - positions) + 0.01 * span
        better = inside & (score > best_score)
        best_score = np.where(better, score, best_score)
        best_start = np.where(better, start, best_start)
    return best_start == begin


# --- Training data ------------------------------------------------------------------------------
def squad_dataset(
    features: SquadFeatures,
    batch_size: int,
    with_labels: bool = True,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A batched `tf.data.Dataset` of `(inputs, {"start_logits": ..., "end_logits": ...})`
    (the labels keyed like `BertQuestionAnswerer`'s outputs), or of inputs only.

    Example:
    >>> dataset = squad_dataset(SquadFeatures.empty(8), batch_size=4)
    >>> sorted(dataset.element_spec[1])
    ['end_logits', 'start_logits']
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    inputs = features.inputs()
    if with_labels:
        labels = {"start_logits": features.start_positions, "end_logits": features.end_positions}
        dataset = tf.data.Dataset.from_tensor_slices((inputs, labels))
    else:
        dataset = tf.data.Dataset.from_tensor_slices(inputs)
    if shuffle:
        dataset = dataset.shuffle(max(len(features), 1), seed=seed,
                                  reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(2)


# --- Decoding -------------------------------------------------------------------------------
@dataclasses.dataclass
class SquadPredictions:
    """What `postprocess_squad` returns, in the official files' formats.

    Args:
        predictions: question id -> answer text (`""`: no answer), `predictions.json`.
        nbest: question id -> the n best answers, best first, each `{"text", "probability",
            "start_logit", "end_logit", "start_char", "end_char"}`, `nbest_predictions.json`.
        null_odds: SQuAD v2.0: question id -> no-answer score minus the best span's score
            (above the threshold: no answer), `null_odds.json`; empty for v1.1.

    Example:
    >>> SquadPredictions({"q1": "Paris"}, {"q1": []}).predictions
    {'q1': 'Paris'}
    """

    predictions: dict[str, str]
    nbest: dict[str, list[dict[str, Any]]]
    null_odds: dict[str, float] = dataclasses.field(default_factory=dict)


def postprocess_squad(
    examples: Sequence[SquadExample],
    features: SquadFeatures,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    version_2_with_negative: bool = False,
    null_score_diff_threshold: float = 0.0,
) -> SquadPredictions:
    """Turns span logits `[features, max_seq_length]` into answer texts.

    For each example, the `n_best_size` best start and end tokens of each of its windows are
    paired (end not before start, at most `max_answer_length` tokens, a start token that has
    its maximum context in that window); spans are ranked by start + end logit over all
    windows, duplicates of the same text removed. The answer is the original context text
    under the best span. With `version_2_with_negative`, the no-answer score is the lowest
    `[CLS]` start + end logit over the windows; the answer is `""` when that score exceeds
    the best span's by more than `null_score_diff_threshold`.

    Example:
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "where", "?", "in", "paris", "."]
    >>> example = SquadExample("q1", "Where?", "In Paris.", [("Paris", 3)])
    >>> features = create_squad_features([example], WordPieceTokenizer(vocab), max_seq_length=10,
    ...                                  doc_stride=4, max_query_length=3)
    >>> start = np.zeros((1, 10)); start[0, 5] = 5.0
    >>> end = np.zeros((1, 10)); end[0, 5] = 4.0
    >>> postprocess_squad([example], features, start, end).predictions
    {'q1': 'Paris'}
    """
    if n_best_size < 1 or max_answer_length < 1:
        raise ValueError(f"n_best_size ({n_best_size}) and max_answer_length "
                         f"({max_answer_length}) must be at least 1.")
    start_logits = np.asarray(start_logits, np.float32)
    end_logits = np.asarray(end_logits, np.float32)
    expected = (len(features), features.token_ids.shape[1])
    if start_logits.shape != expected or end_logits.shape != expected:
        raise ValueError(f"start_logits {start_logits.shape} and end_logits {end_logits.shape} "
                         f"must both be [features, max_seq_length] = {expected}, one row per "
                         "feature in the features' order.")
    by_example = collections.defaultdict(list)
    for f, i in enumerate(features.example_index):
        by_example[int(i)].append(f)

    result = SquadPredictions({}, {}, {})
    for i, example in enumerate(examples):
        candidates = []  # (score, start logit, end logit, start char, end char)
        null_score = math.inf
        null_logits = (0.0, 0.0)
        for f in by_example.get(i, []):
            is_context = features.char_starts[f] >= 0
            if start_logits[f, 0] + end_logits[f, 0] < null_score:
                null_score = float(start_logits[f, 0] + end_logits[f, 0])
                null_logits = (float(start_logits[f, 0]), float(end_logits[f, 0]))
            starts = _top_positions(start_logits[f], is_context & features.max_context[f],
                                    n_best_size)
            ends = _top_positions(end_logits[f], is_context, n_best_size)
            s, e = np.meshgrid(starts, ends, indexing="ij")
            valid = (e >= s) & (e - s + 1 <= max_answer_length)
            for start, end in zip(s[valid], e[valid], strict=True):
                candidates.append((
                    float(start_logits[f, start] + end_logits[f, end]),
                    float(start_logits[f, start]), float(end_logits[f, end]),
                    int(features.char_starts[f, start]), int(features.char_ends[f, end])))
        candidates.sort(key=lambda c: -c[0])
        nbest, seen = [], set()
        for score, start_logit, end_logit, begin, finish in candidates:
            text = example.context[begin:finish]
            if text in seen:
                continue
            seen.add(text)
            nbest.append({"text": text, "start_logit": start_logit, "end_logit": end_logit,
                          "start_char": begin, "end_char": finish, "score": score})
            if len(nbest) == n_best_size:
                break
        best_non_null = nbest[0] if nbest else None
        has_features = bool(by_example.get(i))
        if version_2_with_negative and has_features:
            nbest.append({"text": "", "start_logit": null_logits[0], "end_logit": null_logits[1],
                          "start_char": -1, "end_char": -1, "score": null_score})
            nbest.sort(key=lambda c: -c["score"])
        if not nbest:
            nbest = [{"text": "", "start_logit": 0.0, "end_logit": 0.0, "start_char": -1,
                      "end_char": -1, "score": 0.0}]
        scores = np.array([c.pop("score") for c in nbest], np.float64)
        probabilities = np.exp(scores - scores.max())
        probabilities /= probabilities.sum()
        result.nbest[example.qas_id] = [
            {"text": c["text"], "probability": float(p), "start_logit": c["start_logit"],
             "end_logit": c["end_logit"], "start_char": c["start_char"],
             "end_char": c["end_char"]}
            for c, p in zip(nbest, probabilities, strict=True)]
        text = best_non_null["text"] if best_non_null else ""
        if version_2_with_negative:
            # Without any valid span the best one scores 0, as in the original script.
            best_score = (best_non_null["start_logit"] + best_non_null["end_logit"]
                          if best_non_null else 0.0)
            difference = null_score - best_score if has_features else 0.0
            result.null_odds[example.qas_id] = float(difference)
            if difference > null_score_diff_threshold or not best_non_null:
                text = ""
        result.predictions[example.qas_id] = text
    return result


def _top_positions(logits: np.ndarray, allowed: np.ndarray, count: int) -> np.ndarray:
    """The positions of the `count` largest logits among the `allowed` ones, best first."""
    positions = np.flatnonzero(allowed)
    if len(positions) > count:
        top = np.argpartition(-logits[positions], count - 1)[:count]
        positions = positions[top]
    return positions[np.argsort(-logits[positions], kind="stable")]


def write_squad_predictions(
    output_dir: str | os.PathLike, predictions: SquadPredictions
) -> dict[str, str]:
    """Writes `predictions.json`, `nbest_predictions.json` and (v2.0) `null_odds.json`.

    Returns the paths written, by file kind (`predictions`, `nbest_predictions`, `null_odds`).

    Example:
    >>> import tempfile
    >>> paths = write_squad_predictions(tempfile.mkdtemp(), SquadPredictions({"q": "x"}, {}))
    >>> sorted(paths)
    ['nbest_predictions', 'predictions']
    """
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    files = {"predictions": predictions.predictions, "nbest_predictions": predictions.nbest}
    if predictions.null_odds:
        files["null_odds"] = predictions.null_odds
    paths = {}
    for kind, content in files.items():
        path = os.path.join(output_dir, f"{kind}.json")
        temporary = path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2, ensure_ascii=False)
        os.replace(temporary, path)
        paths[kind] = path
    return paths
