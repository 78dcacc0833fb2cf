"""BERT pretraining data: documents, next-sentence pairs, a WordPiece vocabulary, MLM masking.

The corpus format is the one BERT's pretraining data has always used: **one sentence per line,
documents separated by blank lines**. No sentence splitter runs; each non-empty line is one
segment unit, so a corpus with long paragraphs per line gives long segments (they are cut to
fit). Tiny Shakespeare read this way has one document per speech (the speaker's name, then
its verse lines).

The pipeline, in order:

1. ``read_documents(path)``: ``[[line, ...], ...]``; clear errors for a missing file, an empty
   corpus and a corpus of one document (next-sentence prediction needs two).
2. ``build_vocabulary(texts, vocab_size, output_file)``: a WordPiece ``vocab.txt`` learnt with
   tensorflow-text's ``bert_vocab_from_dataset``, on words normalised and split exactly as the
   uncased ``WordPieceTokenizer`` does; ``[PAD] [UNK] [CLS] [SEP] [MASK]`` get ids 0-4.
3. ``tokenize_documents(documents, tokenizer)`` then ``create_nsp_pairs(...)``: packed
   ``[CLS] A [SEP] B [SEP]`` examples, built in the spirit of google-research/bert's
   ``create_pretraining_data.py`` with a seeded NumPy generator: segments of a document are
   gathered up to a target length (``max_seq_length - 3``; with ``short_seq_prob`` a shorter
   random one), A is a random-length prefix of them, and B is either the rest (label 0, the
   actual next segment) or, with probability ``random_next_prob``, text from a random
   position of another document (label 1; the unused segments go back to the pool).
4. ``MaskedLmMasker``: dynamic masking in the ``tf.data`` graph, with stateless random ops
   seeded per batch (the same seed and batch index give the same masks, so a resumed run
   sees the masks an uninterrupted one would).
5. ``pretraining_dataset(pairs, masker, batch_size)``: batches of
   ``(inputs, labels, sample_weights)`` for ``keras_llm.models.BertPretrainer``.

Masking (Devlin et al. 2019, and google-research/bert's whole-word masking):
``round(masked_lm_prob * n)`` of the ``n`` maskable tokens of a sequence are selected (at
least 1, at most ``max_predictions_per_seq``); ``[CLS]``, ``[SEP]``, ``[PAD]`` and ``[MASK]``
are never selected. Each selected unit becomes ``[MASK]`` with probability 0.8, a random
ordinary token (not a bracketed special such as ``[UNK]`` or ``[unused3]``) with 0.1, and
stays as is with 0.1. With whole-word masking a unit is a word (a piece and the ``##``
pieces that follow it): units are drawn in random order and taken while the selected pieces
fit the budget, so all pieces of a word are selected, or none, and share one 80/10/10 draw.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from keras_llm.tokenizers.word_piece_tokenizer import WordPieceTokenizer, load_vocabulary

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
# Never selected for prediction (the unknown token is, as in google-research/bert).
_UNMASKABLE = (PAD, CLS, SEP, MASK)
_BRACKETED = re.compile(r"^\[[^\[\]]*\]$")
_SEED_MAX = 2**31 - 1


# --- Documents -------------------------------------------------------------------------------
def read_documents(path: str | os.PathLike, min_documents: int = 2) -> list[list[str]]:
    """Documents of a plain-text corpus: blank-line separated, one sentence per line.

    Lines are stripped of surrounding whitespace; lines that are blank after stripping end a
    document (several in a row end one). The file must be UTF-8.

    Args:
        path: the corpus file.
        min_documents: fewer raise an error (next-sentence prediction draws its random
            segments from another document, so it needs two).

    Returns:
        ``[[sentence, ...], ...]``, every document non-empty.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not UTF-8, no text, or fewer than ``min_documents`` documents.

    Example:
    >>> import tempfile
    >>> path = tempfile.mktemp(suffix=".txt")
    >>> _ = open(path, "w").write("The cat sat.\\nIt purred.\\n\\nRain fell.\\n")
    >>> read_documents(path)
    [['The cat sat.', 'It purred.'], ['Rain fell.']]
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Corpus file not found: {path}.")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line} is not valid UTF-8 (byte {error.start}); convert the file first, "
            "e.g. `iconv -f latin1 -t utf-8`."
        ) from None
    documents: list[list[str]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if line:
            documents[-1].append(line)
        elif documents[-1]:
            documents.append([])
    documents = [document for document in documents if document]
    if not documents:
        raise ValueError(
            f"{path} holds no text: the corpus is empty. Give a file with one sentence per line "
            "and a blank line between documents."
        )
    if len(documents) < min_documents:
        raise ValueError(
            f"{path} holds {len(documents)} document(s); next-sentence prediction needs at least "
            f"{min_documents}, since its random second segments come from another document. "
            "Separate the documents with blank lines."
        )
    return documents


# --- Vocabulary ------------------------------------------------------------------------------
def build_vocabulary(
    texts: Iterable[str],
    vocab_size: int,
    output_file: str | os.PathLike | None = None,
    reserved_tokens: Sequence[str] = SPECIAL_TOKENS,
    lowercase: bool = True,
    learn_params: dict[str, Any] | None = None,
) -> list[str]:
    """Learns a WordPiece vocabulary from text and writes it as ``vocab.txt`` (if asked).

    The text is normalised and split into words by ``WordPieceTokenizer`` itself (lowercase,
    accents stripped, punctuation and CJK ideographs isolated), then the pieces are learnt by
    tensorflow-text's ``bert_vocab_from_dataset`` (which re-splits with its own
    ``BasicTokenizer``; on already split words that changes nothing). ``reserved_tokens`` come
    first, in order (ids 0, 1, ...); every character of the corpus is in the vocabulary, alone
    and as a ``##`` suffix, so the corpus tokenizes without ``[UNK]``.

    Args:
        texts: sentences or lines (any iterable of strings).
        vocab_size: the most pieces wanted. The vocabulary is that of the lowest piece
            frequency threshold that fits (found by bisection), so it can fall short: on a
            small corpus neighbouring thresholds are far apart (tiny Shakespeare: 7405
            pieces at 2 occurrences, 11521 at 1, for a target of 8000).
        output_file: where to write the vocabulary, one token per line.
        reserved_tokens: first tokens of the vocabulary; BERT pretraining needs
            ``[PAD] [UNK] [CLS] [SEP] [MASK]``.
        lowercase: normalise as the uncased tokenizer (``False``: cased, accents kept).
        learn_params: extra arguments of ``wordpiece_tokenizer_learner_lib.learn``;
            ``lower_thresh`` (default 2: a piece must occur twice) is the lowest threshold
            tried.

    Returns:
        The vocabulary, id = position.

    Example:
    >>> vocab = build_vocabulary(["The cat sat.", "The cats sat, purring."] * 20, 60)
    >>> vocab[:5]
    ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
    >>> tokenizer = WordPieceTokenizer(vocab)
    >>> tokenizer.detokenize(tokenizer(["The CATS sat purring, tt."])).numpy()[0].decode()
    'the cats sat purring , tt .'
    """
    from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset

    if vocab_size < len(reserved_tokens) + 1:
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room beside the {len(reserved_tokens)} reserved "
            "tokens; ask for a few thousand."
        )
    texts = [str(text) for text in texts]
    if not any(text.strip() for text in texts):
        raise ValueError("build_vocabulary: the text is empty; nothing to learn a vocabulary from.")
    splitter = WordPieceTokenizer([UNK], lowercase=lowercase, special_tokens_in_strings=False)
    lines = []
    for start in range(0, len(texts), 4096):
        batch = tf.constant(texts[start : start + 4096], tf.string)
        words = splitter.split_words(batch)
        lines.extend(tf.strings.reduce_join(words, axis=-1, separator=" ").numpy().tolist())
    counts = collections.Counter(word for line in lines for word in line.split())
    if not counts:
        raise ValueError("build_vocabulary: the text has no words after normalisation.")
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(lines, tf.string)).batch(4096)
    params = dict(learn_params or {})
    lowest = int(params.pop("lower_thresh", 2))  # Pieces seen once are noise.
    params.pop("upper_thresh", None)
    sizes: dict[int, list[str]] = {}

    def learn(threshold: int) -> list[str]:
        """The vocabulary of one piece-frequency threshold (it shrinks as that grows)."""
        if threshold not in sizes:
            sizes[threshold] = bert_vocab_from_dataset.bert_vocab_from_dataset(
                dataset,
                vocab_size=vocab_size,
                reserved_tokens=list(reserved_tokens),
                bert_tokenizer_params={"lower_case": False},
                learn_params={**params, "lower_thresh": threshold, "upper_thresh": threshold},
            )
        return sizes[threshold]

    # The learner's own binary search can stop on a vocabulary far above the target; search
    # the smallest threshold whose vocabulary fits, from a first guess: the count of the word
    # ranked vocab_size / 4 (every learn is a full pass over the words).
    ranked = sorted(counts.values(), reverse=True)
    high = max(lowest, ranked[min(max(1, vocab_size // 4), len(ranked)) - 1])
    low = lowest - 1  # Invariant: learn(high) fits, learn(low) does not (or low < lowest).
    while len(learn(high)) > vocab_size and high <= ranked[0]:
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        if len(learn(middle)) > vocab_size:
            low = middle
        else:
            high = middle
    vocabulary = learn(high)
    if output_file is not None:
        output_file = Path(output_file)
        output_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = output_file.with_name(output_file.name + ".tmp")
        temporary.write_text("".join(f"{token}\n" for token in vocabulary), encoding="utf-8")
        os.replace(temporary, output_file)  # A kill mid-write leaves no half vocabulary.
    return vocabulary


def check_pretraining_vocabulary(
    vocabulary: Sequence[str], source: str | os.PathLike = "the vocabulary"
) -> None:
    """Raises a ``ValueError`` naming ``source`` if a token pretraining needs is missing.

    Example:
    >>> check_pretraining_vocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])
    """
    missing = [token for token in SPECIAL_TOKENS if token not in vocabulary]
    if missing:
        raise ValueError(
            f"{source} lacks {', '.join(missing)}, which BERT pretraining needs "
            f"({' '.join(SPECIAL_TOKENS)}). Add the token(s) as lines of the vocabulary file, or "
            "give no vocabulary file and let one be built from the corpus."
        )


def load_pretraining_tokenizer(
    vocab_file: str | os.PathLike, lowercase: bool = True
) -> WordPieceTokenizer:
    """A ``WordPieceTokenizer`` on ``vocab_file``, checked to hold the pretraining specials.

    Example:
    >>> import tempfile
    >>> path = tempfile.mktemp(suffix=".txt")
    >>> _ = open(path, "w").write("[PAD]\\n[UNK]\\n[CLS]\\n[SEP]\\n[MASK]\\nhi\\n")
    >>> load_pretraining_tokenizer(path)(["hi"]).to_list()
    [[5]]
    """
    vocabulary = load_vocabulary(vocab_file)
    check_pretraining_vocabulary(vocabulary, os.fspath(vocab_file))
    return WordPieceTokenizer(vocabulary, lowercase=lowercase)


# --- Next-sentence pairs ---------------------------------------------------------------------
def tokenize_documents(
    documents: Sequence[Sequence[str]], tokenizer: WordPieceTokenizer, batch_size: int = 4096
) -> list[list[np.ndarray]]:
    """Token ids of every sentence, per document; sentences with no tokens are dropped.

    Example:
    >>> tokenizer = WordPieceTokenizer(["[UNK]", "a", "b"])
    >>> tokenize_documents([["a b", "b"], ["a"]], tokenizer)
    [[array([1, 2], dtype=int32), array([2], dtype=int32)], [array([1], dtype=int32)]]
    """
    sentences = [sentence for document in documents for sentence in document]
    ids: list[np.ndarray] = []
    for start in range(0, len(sentences), batch_size):
        batch = tokenizer(sentences[start : start + batch_size])
        values = batch.flat_values.numpy().astype("int32")
        splits = batch.row_splits.numpy()
        ids.extend(values[splits[i] : splits[i + 1]] for i in range(len(splits) - 1))
    tokenized, position = [], 0
    for document in documents:
        rows = [row for row in ids[position : position + len(document)] if len(row)]
        position += len(document)
        if rows:
            tokenized.append(rows)
    return tokenized


@dataclasses.dataclass
class NspPairs:
    """Packed ``[CLS] A [SEP] B [SEP]`` examples, right-padded to ``max_seq_length``.

    Attributes:
        token_ids: int32 ``[num_pairs, max_seq_length]``.
        segment_ids: int32 ``[num_pairs, max_seq_length]``: 0 for ``[CLS] A [SEP]``, 1 for
            ``B [SEP]``, 0 at padding.
        padding_mask: bool ``[num_pairs, max_seq_length]``.
        next_sentence_labels: int32 ``[num_pairs]``: 0 when B follows A in the document,
            1 when B is from another document (Hugging Face's convention).
    """

    token_ids: np.ndarray
    segment_ids: np.ndarray
    padding_mask: np.ndarray
    next_sentence_labels: np.ndarray

    def __len__(self) -> int:
        return len(self.next_sentence_labels)

    def take(self, count: int) -> NspPairs:
        """The first ``count`` pairs."""
        return NspPairs(*(array[:count] for array in dataclasses.astuple(self)))


def _truncate_pair(a: list[int], b: list[int], max_tokens: int, rng: np.random.Generator) -> None:
    """Cuts the longer of ``a``/``b`` one token at a time, at its front or back at random."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()


def create_nsp_pairs(
    documents: Sequence[Sequence[Sequence[int]]],
    max_seq_length: int,
    cls_id: int,
    sep_id: int,
    pad_id: int = 0,
    seed: int = 0,
    short_seq_prob: float = 0.1,
    random_next_prob: float = 0.5,
    dupe_factor: int = 1,
) -> NspPairs:
    """Next-sentence-prediction examples from tokenized documents (module docstring, step 3).

    Unlike google-research/bert, a chunk of a single segment (a long line, or the last line
    of a document put back after a random pair) is not always given a random B: when the
    coin says "actual next" it is paired with its neighbouring line, so the labels stay
    balanced on corpora of short documents (there, the original rule makes about two thirds
    of the pairs random). Only one-line documents always get a random B.

    Args:
        documents: per document, the token ids of each sentence (``tokenize_documents``).
        max_seq_length: packed length, ``[CLS]`` and both ``[SEP]`` included.
        cls_id, sep_id, pad_id: the special token ids.
        seed: seed of the NumPy generator that draws lengths, split points and random segments.
        short_seq_prob: share of chunks given a random shorter target length, so the model
            also sees short inputs.
        random_next_prob: probability that B comes from another document.
        dupe_factor: passes over the corpus (each cuts and pairs differently).

    Returns:
        ``NspPairs``, in corpus order (shuffle them in the input pipeline).

    Example:
    >>> docs = [[[5, 6], [7], [8, 9]], [[10, 11, 12]], [[13], [14]]]
    >>> pairs = create_nsp_pairs(docs, max_seq_length=10, cls_id=2, sep_id=3, seed=1)
    >>> pairs.token_ids.shape[1], set(pairs.next_sentence_labels.tolist()) <= {0, 1}
    (10, True)
    >>> int(pairs.token_ids[0, 0]) == 2 and 3 in pairs.token_ids[0].tolist()
    True
    """
    if max_seq_length < 5:
        raise ValueError(
            f"max_seq_length={max_seq_length} is too short for [CLS] A [SEP] B [SEP]; use >= 5."
        )
    if not 0.0 <= random_next_prob <= 1.0 or not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError("random_next_prob and short_seq_prob must be probabilities in [0, 1].")
    if dupe_factor < 1:
        raise ValueError(f"dupe_factor must be >= 1, got {dupe_factor}.")
    documents = [[list(map(int, s)) for s in document if len(s)] for document in documents]
    documents = [document for document in documents if document]
    if len(documents) < 2:
        raise ValueError(
            f"create_nsp_pairs got {len(documents)} non-empty document(s); next-sentence "
            "prediction needs at least 2 (random second segments come from another document)."
        )
    rng = np.random.default_rng(seed)
    max_tokens = max_seq_length - 3
    rows: list[tuple[list[int], list[int], int]] = []

    def target_length() -> int:
        if rng.random() < short_seq_prob:
            return int(rng.integers(2, max_tokens + 1))
        return max_tokens

    for _ in range(dupe_factor):
        for index, document in enumerate(documents):
            chunk: list[list[int]] = []
            chunk_tokens, target, i = 0, target_length(), 0
            while i < len(document):
                chunk.append(document[i])
                chunk_tokens += len(document[i])
                if i == len(document) - 1 or chunk_tokens >= target:
                    is_random = rng.random() < random_next_prob
                    if len(chunk) == 1 and not is_random:
                        # One segment: pair it with its neighbour in the document (the next
                        # one, consumed here, else the previous one), so that the coin, not
                        # the chunking, decides the label.
                        if i + 1 < len(document):
                            i += 1
                            chunk.append(document[i])
                        elif i > 0:
                            chunk.insert(0, document[i - 1])
                        else:
                            is_random = True  # A one-line document has no next segment.
                    a_end = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
                    a = [t for segment in chunk[:a_end] for t in segment]
                    if is_random:
                        other_index = int(rng.integers(len(documents) - 1))
                        other_index += other_index >= index  # Any document but this one.
                        other = documents[other_index]
                        b_target = max(1, target - len(a))
                        b: list[int] = []
                        for segment in other[int(rng.integers(len(other))) :]:
                            b.extend(segment)
                            if len(b) >= b_target:
                                break
                        i -= len(chunk) - a_end  # Unused segments go back to the pool.
                    else:
                        b = [t for segment in chunk[a_end:] for t in segment]
                    _truncate_pair(a, b, max_tokens, rng)
                    if a and b:
                        rows.append((a, b, int(is_random)))
                    chunk, chunk_tokens, target = [], 0, target_length()
                i += 1

    token_ids = np.full((len(rows), max_seq_length), pad_id, "int32")
    segment_ids = np.zeros((len(rows), max_seq_length), "int32")
    for row, (a, b, _) in enumerate(rows):
        packed = [cls_id, *a, sep_id, *b, sep_id]
        token_ids[row, : len(packed)] = packed
        segment_ids[row, len(a) + 2 : len(packed)] = 1
    lengths = np.array([len(a) + len(b) + 3 for a, b, _ in rows], "int32")
    padding_mask = np.arange(max_seq_length)[None, :] < lengths[:, None]
    labels = np.array([label for _, _, label in rows], "int32")
    return NspPairs(token_ids, segment_ids, padding_mask, labels)


# --- Masking ---------------------------------------------------------------------------------
def _as_seed(seed: Any) -> tf.Tensor:
    """A shape-[2] int32 seed for the stateless random ops."""
    if isinstance(seed, int):
        return tf.constant([seed, 0], tf.int32)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    if seed.shape.rank == 0:
        return tf.stack([seed, 0])
    if seed.shape != [2]:
        raise ValueError(f"`seed` must be an int or a shape-[2] int tensor, got {seed.shape}.")
    return seed


class MaskedLmMasker:
    """Dynamic masked-LM corruption of packed BERT inputs, in TF ops (``tf.data``-ready).

    Called on ``token_ids [batch, length]`` (padded, with ``[CLS]``/``[SEP]``) and a seed,
    it returns the corrupted ``token_ids`` and, per row, ``max_predictions_per_seq`` slots:
    ``mask_positions`` (ascending; unused slots point at 0), ``mask_ids`` (the original
    tokens there, the MLM labels) and ``mask_weights`` (1.0 for a real prediction, 0.0 for
    an unused slot). See the module docstring for the selection rule.

    Args:
        vocabulary: the token list (id = position) or a ``WordPieceTokenizer``; must hold
            ``[PAD] [UNK] [CLS] [SEP] [MASK]``.
        masked_lm_prob: share of the maskable tokens to predict.
        max_predictions_per_seq: prediction slots per sequence (the cap on selections).
        whole_word_masking: select whole words (a piece plus its ``##`` continuations).
        mask_token_rate: share of the selections replaced by ``[MASK]``.
        random_token_rate: share replaced by a random ordinary token (the rest is kept).

    Example:
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s", "sat"]
    >>> masker = MaskedLmMasker(vocab, masked_lm_prob=0.5, max_predictions_per_seq=3)
    >>> out = masker(tf.constant([[2, 5, 6, 7, 8, 3, 0, 0]]), seed=[1, 2])
    >>> sorted(out)
    ['mask_ids', 'mask_positions', 'mask_weights', 'token_ids']
    >>> out["mask_weights"].numpy().tolist()  # round(0.5 * 4 maskable tokens) = 2 selected
    [[1.0, 1.0, 0.0]]
    >>> all(0 < p < 5 for p in out["mask_positions"].numpy()[0][:2])  # never [CLS]/[SEP]
    True
    """

    def __init__(
        self,
        vocabulary: Sequence[str] | WordPieceTokenizer,
        masked_lm_prob: float = 0.15,
        max_predictions_per_seq: int = 20,
        whole_word_masking: bool = False,
        mask_token_rate: float = 0.8,
        random_token_rate: float = 0.1,
    ) -> None:
        if isinstance(vocabulary, WordPieceTokenizer):
            vocabulary = vocabulary.get_vocabulary()
        vocabulary = list(vocabulary)
        check_pretraining_vocabulary(vocabulary)
        if not 0.0 < masked_lm_prob < 1.0:
            raise ValueError(f"masked_lm_prob must be in (0, 1), got {masked_lm_prob}.")
        if max_predictions_per_seq < 1:
            raise ValueError(
                f"max_predictions_per_seq must be >= 1, got {max_predictions_per_seq}."
            )
        if mask_token_rate < 0 or random_token_rate < 0 or mask_token_rate + random_token_rate > 1:
            raise ValueError(
                "mask_token_rate and random_token_rate must be >= 0 and sum to at most 1; got "
                f"{mask_token_rate} and {random_token_rate}."
            )
        self.vocabulary_size = len(vocabulary)
        self.masked_lm_prob = float(masked_lm_prob)
        self.max_predictions_per_seq = int(max_predictions_per_seq)
        self.whole_word_masking = bool(whole_word_masking)
        self.mask_token_rate = float(mask_token_rate)
        self.random_token_rate = float(random_token_rate)
        index = {token: i for i, token in enumerate(vocabulary)}
        self.mask_token_id = index[MASK]
        self.unmaskable_ids = sorted(index[token] for token in _UNMASKABLE)
        unmaskable = np.zeros(len(vocabulary), bool)
        unmaskable[self.unmaskable_ids] = True
        continuation = np.array([token.startswith("##") for token in vocabulary])
        ordinary = [
            i for i, token in enumerate(vocabulary) if not _BRACKETED.match(token)
        ] or [index[UNK]]
        self._unmaskable = tf.constant(unmaskable)
        self._continuation = tf.constant(continuation)
        self._replacements = tf.constant(ordinary, tf.int32)

    def __call__(self, token_ids: Any, seed: Any) -> dict[str, tf.Tensor]:
        """Masks a batch; ``seed`` is an int or a shape-[2] int tensor (stateless ops)."""
        token_ids = tf.convert_to_tensor(token_ids)
        if token_ids.shape.rank != 2:
            raise ValueError(
                f"MaskedLmMasker expects token_ids [batch, length], got shape {token_ids.shape}."
            )
        original_dtype = token_ids.dtype
        token_ids = tf.cast(token_ids, tf.int32)
        select_seed, treat_seed, random_seed = tf.unstack(
            tf.random.experimental.stateless_split(_as_seed(seed), 3)
        )
        shape = tf.shape(token_ids)
        batch, length = shape[0], shape[1]
        positions = tf.broadcast_to(tf.range(length)[tf.newaxis], shape)

        special = tf.gather(self._unmaskable, token_ids)
        maskable = ~special
        # A unit starts at every special token, every token after one, and (whole-word
        # masking) every piece that is not a "##" continuation; otherwise every token.
        if self.whole_word_masking:
            after_special = tf.concat([tf.ones([batch, 1], tf.bool), special[:, :-1]], axis=1)
            starts = special | after_special | ~tf.gather(self._continuation, token_ids)
        else:
            starts = tf.ones_like(special)
        unit = tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1
        # Units numbered across the batch, so one segment op serves every row.
        flat_unit = tf.reshape(unit + tf.range(batch)[:, tf.newaxis] * length, [-1])
        num_units = batch * length

        def per_unit(values: tf.Tensor) -> tf.Tensor:
            """Each token gets the value at its unit's first token."""
            values = tf.where(starts, values, tf.zeros_like(values))
            summed = tf.math.unsorted_segment_sum(tf.reshape(values, [-1]), flat_unit, num_units)
            return tf.reshape(tf.gather(summed, flat_unit), shape)

        # Random unit order; special units sort last (score 2 > any uniform draw).
        scores = per_unit(tf.random.stateless_uniform(tf.cast(shape, tf.int32), select_seed))
        scores = tf.where(maskable, scores, 2.0)
        order = tf.argsort(scores, axis=1, stable=True)  # A unit's pieces stay together.
        taken = tf.cumsum(tf.cast(tf.gather(maskable, order, batch_dims=1), tf.int32), axis=1)
        # Pieces selected once each unit (in random order) is complete.
        rank = tf.argsort(order, axis=1)  # Each token's place in the random order.
        taken_at_token = tf.gather(taken, rank, batch_dims=1)
        unit_total = tf.reshape(
            tf.gather(
                tf.math.unsorted_segment_max(
                    tf.reshape(taken_at_token, [-1]), flat_unit, num_units
                ),
                flat_unit,
            ),
            shape,
        )
        num_maskable = tf.reduce_sum(tf.cast(maskable, tf.int32), axis=1)
        budget = tf.cast(
            tf.round(tf.cast(num_maskable, tf.float32) * self.masked_lm_prob), tf.int32
        )
        budget = tf.clip_by_value(budget, 1, self.max_predictions_per_seq)
        budget = tf.minimum(budget, num_maskable)
        selected = maskable & (unit_total <= budget[:, tf.newaxis])

        # 80/10/10, one draw per unit.
        treatment = per_unit(tf.random.stateless_uniform(tf.cast(shape, tf.int32), treat_seed))
        random_ids = tf.gather(
            self._replacements,
            tf.random.stateless_uniform(
                tf.cast(shape, tf.int32), random_seed, maxval=tf.size(self._replacements),
                dtype=tf.int32,
            ),
        )
        replaced = tf.where(treatment < self.mask_token_rate, self.mask_token_id, token_ids)
        replaced = tf.where(
            (treatment >= self.mask_token_rate)
            & (treatment < self.mask_token_rate + self.random_token_rate),
            random_ids,
            replaced,
        )
        masked_ids = tf.where(selected, replaced, token_ids)

        # Selected positions first (ascending), then the unselected ones as filler.
        slots = self.max_predictions_per_seq
        key = tf.where(selected, positions, positions + length)
        pad = tf.maximum(slots - length, 0)
        key = tf.pad(key, [[0, 0], [0, pad]], constant_values=3 * length)
        picked = tf.sort(key, axis=1)[:, :slots]
        weights = picked < length
        mask_positions = tf.where(weights, picked, 0)
        mask_ids = tf.where(weights, tf.gather(token_ids, mask_positions, batch_dims=1), 0)
        return {
            "token_ids": tf.cast(masked_ids, original_dtype),
            "mask_positions": mask_positions,
            "mask_ids": mask_ids,
            "mask_weights": tf.cast(weights, tf.float32),
        }


# --- tf.data ---------------------------------------------------------------------------------
def pretraining_dataset(
    pairs: NspPairs,
    masker: MaskedLmMasker,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    repeat: bool = True,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Batches of ``(inputs, labels, sample_weights)`` for ``BertPretrainer.fit``.

    ``inputs``: ``token_ids`` (masked), ``segment_ids``, ``padding_mask``, ``mask_positions``;
    ``labels``: ``{"mlm_logits": mask_ids, "nsp_logits": next_sentence_labels}``;
    ``sample_weights``: ``{"mlm_logits": mask_weights, "nsp_logits": ones}``.

    Pass ``p`` over the pairs is shuffled with the stateless seed ``(seed, -1-p)`` (a new order
    each pass, the same on every run) and batch ``k`` of the stream is masked with the seed
    ``(seed, k)``: the stream is a pure function of ``seed`` and the position, whatever the
    global seed or the number of iterators made before, so ``fit_resumable`` can skip to a
    step and see what an uninterrupted run would have seen. ``repeat=True`` gives an endless
    stream (masks change each pass); for evaluation use ``shuffle=False, repeat=False,
    drop_remainder=False``: fixed masks.

    Example:
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d"]
    >>> pairs = create_nsp_pairs([[[5, 6], [7]], [[8], [5]]], 8, cls_id=2, sep_id=3)
    >>> dataset = pretraining_dataset(pairs, MaskedLmMasker(vocab, max_predictions_per_seq=2),
    ...                               batch_size=2, repeat=False, drop_remainder=False)
    >>> inputs, labels, weights = next(iter(dataset))
    >>> sorted(inputs), sorted(labels)
    (['mask_positions', 'padding_mask', 'segment_ids', 'token_ids'], ['mlm_logits', 'nsp_logits'])
    """
    if len(pairs) == 0:
        raise ValueError("pretraining_dataset: no pairs (the corpus gave no examples).")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    count = len(pairs)
    base_seed = int(seed) % _SEED_MAX
    columns = {
        "token_ids": tf.constant(pairs.token_ids, tf.int32),
        "segment_ids": tf.constant(pairs.segment_ids, tf.int32),
        "padding_mask": tf.constant(pairs.padding_mask, tf.bool),
        "next_sentence_labels": tf.constant(pairs.next_sentence_labels, tf.int32),
    }

    def one_pass(index: tf.Tensor) -> tf.data.Dataset:
        """The pair indices of pass ``index``: a permutation drawn from (seed, index) only
        (stateless), not from how many iterators were made before or the global seed."""
        if not shuffle:
            return tf.data.Dataset.range(count)
        # (seed, -1 - p): never one of the masking seeds (seed, k >= 0).
        pass_seed = tf.stack([tf.constant(base_seed, tf.int32), -1 - tf.cast(index, tf.int32)])
        scores = tf.random.stateless_uniform([count], seed=pass_seed)
        return tf.data.Dataset.from_tensor_slices(tf.argsort(scores))

    if repeat:
        indices = tf.data.Dataset.counter().flat_map(one_pass)
    else:
        indices = one_pass(tf.constant(0, tf.int64))
    dataset = indices.batch(batch_size, drop_remainder=drop_remainder).map(
        lambda rows: {name: tf.gather(column, rows) for name, column in columns.items()}
    )

    def mask(index: tf.Tensor, batch: dict[str, tf.Tensor]):
        batch_seed = tf.stack([tf.constant(base_seed, tf.int32), tf.cast(index, tf.int32)])
        masked = masker(batch["token_ids"], batch_seed)
        inputs = {
            "token_ids": masked["token_ids"],
            "segment_ids": batch["segment_ids"],
            "padding_mask": batch["padding_mask"],
            "mask_positions": masked["mask_positions"],
        }
        labels = {"mlm_logits": masked["mask_ids"], "nsp_logits": batch["next_sentence_labels"]}
        weights = {
            "mlm_logits": masked["mask_weights"],
            "nsp_logits": tf.ones_like(batch["next_sentence_labels"], tf.float32),
        }
        return inputs, labels, weights

    return dataset.enumerate().map(mask, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )
