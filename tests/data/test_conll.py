"""CoNLL column files, IOB1 -> IOB2, first-piece label alignment and mapping predictions back."""

from __future__ import annotations

import doctest
from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from keras_llm.data import conll
from keras_llm.data.conll import (
    IGNORE_LABEL,
    align_word_labels,
    conll_dataset,
    encode_sentences,
    iob1_to_iob2,
    label_names_from_tags,
    predict_word_tags,
    read_conll,
    tags_from_predictions,
)
from keras_llm.tokenizers import BertPreprocessor, WordPieceTokenizer

CONLL_LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "john", "lives", "in", "new", "york", "un",
         "##aff", "##able", "##s", ".", "a", "##b", "##c", "##d", "##e", "##f"]


def preprocessor(sequence_length: int = 16) -> BertPreprocessor:
    return BertPreprocessor(WordPieceTokenizer(VOCAB), sequence_length=sequence_length)


def write(tmp_path, text: str, name: str = "data.conll"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_docstring_examples():
    result = doctest.testmod(conll, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --- Real files -----------------------------------------------------------------------------
# The published CoNLL-2003 English statistics (Tjong Kim Sang and De Meulder, 2003, table 2).
@pytest.mark.parametrize(
    "split, sentences, tokens, entities",
    [("train", 14041, 203621, {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}),
     ("testa", 3250, 51362, {"LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842}),
     ("testb", 3453, 46435, {"LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617})],
)
def test_reads_the_real_conll2003_files(shared_data, split, sentences, tokens, entities):
    words, tags = read_conll(shared_data / "conll2003" / f"eng.{split}", CONLL_LABELS)
    assert len(words) == sentences and sum(map(len, words)) == tokens
    assert [len(w) for w in words] == [len(t) for t in tags]
    # IOB2: one B- per entity, and no I- that does not continue its type.
    counts = Counter(t[2:] for row in tags for t in row if t.startswith("B-"))
    assert dict(counts) == entities
    for row in tags:
        assert iob1_to_iob2(row) == row
    if split == "train":
        assert label_names_from_tags(tags) == CONLL_LABELS
        assert words[0] == ["EU", "rejects", "German", "call", "to", "boycott", "British",
                            "lamb", "."]
        assert tags[0] == ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]


def test_alignment_matches_hugging_face_word_ids(shared_data, minilm_dir):
    """Labels on first pieces equal the usual `word_ids()` recipe of HF's fast tokenizer."""
    transformers = pytest.importorskip("transformers")
    words, tags = read_conll(shared_data / "conll2003" / "eng.testa")
    words, tags = words[:300], tags[:300]
    pre = BertPreprocessor.from_pretrained(minilm_dir, sequence_length=64)
    ids = conll.tags_to_ids(tags, CONLL_LABELS)
    ours = align_word_labels(tf.ragged.constant(words), tf.ragged.constant(ids), pre)
    hf = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    encoded = hf(words, is_split_into_words=True, truncation=True, max_length=64,
                 padding="max_length")
    for row in range(len(words)):
        expected, previous = [], None
        for word in encoded.word_ids(row):
            expected.append(ids[row][word] if word is not None and word != previous else -1)
            previous = word
        assert ours["labels"][row].numpy().tolist() == expected, words[row]
        assert ours["token_ids"][row].numpy().tolist() == encoded["input_ids"][row]


# --- IOB1 -> IOB2 ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "iob1, iob2",
    [([], []),
     (["O", "O"], ["O", "O"]),
     (["I-PER"], ["B-PER"]),
     (["I-PER", "I-PER", "I-PER"], ["B-PER", "I-PER", "I-PER"]),
     (["I-PER", "I-LOC"], ["B-PER", "B-LOC"]),             # a type change opens an entity
     (["I-LOC", "B-LOC", "I-LOC"], ["B-LOC", "B-LOC", "I-LOC"]),  # IOB1's B- splits same types
     (["O", "I-MISC", "O", "I-MISC"], ["O", "B-MISC", "O", "B-MISC"]),
     (["B-ORG", "I-ORG", "O"], ["B-ORG", "I-ORG", "O"]),   # already IOB2: unchanged
     (["I-ORG", "I-ORG", "I-PER", "O", "I-MISC"], ["B-ORG", "I-ORG", "B-PER", "O", "B-MISC"])],
)
def test_iob1_to_iob2(iob1, iob2):
    assert iob1_to_iob2(iob1) == iob2
    assert iob1_to_iob2(iob2) == iob2


@pytest.mark.parametrize("bad", ["PER", "E-PER", "I-", "b-PER", ""])
def test_iob1_to_iob2_refuses_non_iob_tags(bad):
    with pytest.raises(ValueError, match="not an IOB tag"):
        iob1_to_iob2(["O", bad])


def test_label_names_are_ordered_with_o_first():
    assert label_names_from_tags([["I-PER"], ["B-ORG", "O"]]) == [
        "O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert label_names_from_tags([["O"]]) == ["O"]


# --- Reader ---------------------------------------------------------------------------------
def test_reader_handles_docstart_blank_lines_and_no_final_newline(tmp_path):
    path = write(tmp_path, "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nsays VBZ I-VP O\n\n\n"
                           "-DOCSTART- -X- O O\nPeter NNP I-NP I-PER\n"
                           "-DOCSTART- -X- O O\r\nBlackburn NNP I-NP I-PER\r\nWest NNP I-NP I-PER")
    words, tags = read_conll(path)
    assert words == [["EU", "says"], ["Peter"], ["Blackburn", "West"]]
    assert tags == [["B-ORG", "O"], ["B-PER"], ["B-PER", "I-PER"]]
    assert read_conll(path, iob1=False)[1][2] == ["I-PER", "I-PER"]


def test_reader_takes_the_tag_from_the_last_column(tmp_path):
    path = write(tmp_path, "Berlin\tB-LOC\nis\tO\n")
    assert read_conll(path) == ([["Berlin", "is"]], [["B-LOC", "O"]])


def test_wrong_column_count_names_file_and_line(tmp_path):
    path = write(tmp_path, "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ O\n")
    with pytest.raises(ValueError, match=r"data\.conll:4: 3 columns where 4 are expected "
                                         r"\(as on line 3\)"):
        read_conll(path)


def test_one_column_line_names_file_and_line(tmp_path):
    path = write(tmp_path, "EU I-ORG\n\nlonely\n")
    with pytest.raises(ValueError, match=r"data\.conll:3: one column"):
        read_conll(path)


def test_non_iob_tag_names_file_and_line(tmp_path):
    path = write(tmp_path, "EU NNP I-NP I-ORG\nsays VBZ I-VP VBZ\n")
    with pytest.raises(ValueError, match=r"data\.conll:2: 'VBZ' in the last column is not an IOB"):
        read_conll(path)


def test_tag_outside_the_label_set_names_file_and_line(tmp_path):
    path = write(tmp_path, "EU I-ORG\n\nA O\nnew I-EVENT\n")
    with pytest.raises(ValueError, match=r"data\.conll:4: tag 'B-EVENT' \(IOB2 of 'I-EVENT'\) "
                                         r"is not in the label set"):
        read_conll(path, CONLL_LABELS)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.conll"):
        read_conll(tmp_path / "nope.conll")
    with pytest.raises(ValueError, match="holds no sentences"):
        read_conll(write(tmp_path, "-DOCSTART- -X- O O\n\n"))


# --- Alignment ------------------------------------------------------------------------------
def test_labels_sit_on_first_pieces_of_many_piece_and_empty_words():
    # "unaffables" -> un ##aff ##able ##s (4 pieces); "\u200b" (zero width space) and a lone
    # combining accent tokenize to nothing; "John" is one piece.
    words = tf.ragged.constant([["John", "unaffables", "\u200b", "lives", "\u0301", "."],
                                ["New", "York"]])
    labels = tf.ragged.constant([[7, 3, 4, 0, 4, 0], [1, 2]])
    out = align_word_labels(words, labels, preprocessor(12))
    assert out["token_ids"].numpy().tolist() == [
        [2, 4, 9, 10, 11, 12, 5, 13, 3, 0, 0, 0],
        [2, 7, 8, 3, 0, 0, 0, 0, 0, 0, 0, 0]]
    assert out["labels"].numpy().tolist() == [
        [-1, 7, 3, -1, -1, -1, 0, 0, -1, -1, -1, -1],
        [-1, 1, 2, -1, -1, -1, -1, -1, -1, -1, -1, -1]]
    assert out["word_positions"].to_list() == [[1, 2, -1, 6, -1, 7], [1, 2]]
    np.testing.assert_array_equal(out["sample_weight"].numpy(), out["labels"].numpy() >= 0)
    assert out["padding_mask"].numpy().sum(1).tolist() == [9, 4]
    assert not out["segment_ids"].numpy().any()


def test_truncation_drops_words_past_the_length():
    # Budget 4 pieces: "John" (1) + "unaffables" (4) -> the second word starts inside the budget
    # and keeps its label; "lives" starts past it and loses its position.
    words = tf.ragged.constant([["John", "unaffables", "lives"]])
    out = align_word_labels(words, tf.ragged.constant([[7, 3, 0]]), preprocessor(6))
    assert out["token_ids"].numpy().tolist() == [[2, 4, 9, 10, 11, 3]]
    assert out["labels"].numpy().tolist() == [[-1, 7, 3, -1, -1, -1]]
    assert out["word_positions"].to_list() == [[1, 2, -1]]


def test_alignment_runs_inside_a_graph_and_without_labels():
    fn = tf.function(lambda w: align_word_labels(w, None, preprocessor(8))["word_positions"])
    positions = fn(tf.ragged.constant([["new", "york"], [], ["a"]]))
    assert positions.to_list() == [[1, 2], [], [1]]


def test_labels_must_match_the_words():
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="one label id per"):
        align_word_labels(tf.ragged.constant([["a", "a"]]), tf.ragged.constant([[1]]),
                          preprocessor())


def test_a_tokenizer_needs_an_explicit_length():
    with pytest.raises(ValueError, match="sequence_length"):
        align_word_labels(tf.ragged.constant([["a"]]), None, WordPieceTokenizer(VOCAB))


# --- Datasets and mapping back ---------------------------------------------------------------
SENTENCES = [["John", "lives", "in", "New", "York", "."], ["unaffables", "\u200b", "John"],
             ["a"], ["New", "York"], ["John"]]
TAGS = [["B-PER", "O", "O", "B-LOC", "I-LOC", "O"], ["B-MISC", "I-MISC", "B-PER"], ["O"],
        ["B-LOC", "I-LOC"], ["B-PER"]]


def test_training_dataset_yields_inputs_labels_and_weights():
    dataset = conll_dataset(SENTENCES, TAGS, preprocessor(10), CONLL_LABELS, batch_size=2)
    batches = list(dataset)
    assert [b[1].shape[0] for b in batches] == [2, 2, 1]
    inputs, labels, weights = batches[0]
    assert sorted(inputs) == ["padding_mask", "segment_ids", "token_ids"]
    assert labels.numpy().tolist()[1] == [-1, 3, -1, -1, -1, 7, -1, -1, -1, -1]
    assert float(tf.reduce_sum(weights)) == 6 + 2  # the empty word has no position


def test_batches_can_be_padded_to_their_longest_row():
    pre = preprocessor(16)
    full = list(conll_dataset(SENTENCES, TAGS, pre, CONLL_LABELS, batch_size=2))
    trimmed = list(conll_dataset(SENTENCES, TAGS, pre, CONLL_LABELS, batch_size=2,
                                 pad_to_multiple_of=4))
    # Longest rows: 8 pieces (sentence 0) -> 8; "a" and "New York" (3, 4) -> 4; "John" -> 4.
    assert [b[1].shape[1] for b in trimmed] == [8, 4, 4]
    for (x, y, w), (tx, ty, tw) in zip(full, trimmed, strict=True):
        width = ty.shape[1]
        np.testing.assert_array_equal(y[:, :width], ty)
        np.testing.assert_array_equal(w[:, :width], tw)
        np.testing.assert_array_equal(x["token_ids"][:, :width], tx["token_ids"])
        assert not x["padding_mask"].numpy()[:, width:].any()
    unlabelled = next(iter(conll_dataset(SENTENCES, None, pre, batch_size=2,
                                         pad_to_multiple_of=5)))
    assert unlabelled["token_ids"].shape == (2, 10)
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        conll_dataset(SENTENCES, TAGS, pre, CONLL_LABELS, pad_to_multiple_of=-2)


def test_shuffling_is_seeded_and_reshuffles_each_epoch():
    sentences = [["john"] * (i + 1) for i in range(40)]
    tags = [["B-PER"] + ["I-PER"] * i for i in range(40)]

    def dataset(seed):
        return conll_dataset(sentences, tags, preprocessor(48), CONLL_LABELS, batch_size=40,
                             shuffle=True, seed=seed).take(2)  # Endless: two epochs.

    def epochs(data):
        return [b[0]["padding_mask"].numpy().sum(1).tolist() for b in data]

    # A new pipeline built with the same seed (a resumed run) sees the same order.
    first, second = epochs(dataset(1))
    assert sorted(first) == list(range(3, 43)) and first != second
    assert epochs(dataset(1)) == [first, second] and epochs(dataset(2))[0] != first


def test_predictions_map_back_to_word_tags():
    pre = preprocessor(6)
    dataset = conll_dataset(SENTENCES, TAGS, pre, CONLL_LABELS, batch_size=8)
    _, labels, _ = next(iter(dataset))
    inputs, positions = encode_sentences(SENTENCES, pre)
    unlabelled = next(iter(conll_dataset(SENTENCES, None, pre, batch_size=8)))
    for name in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(inputs[name], unlabelled[name].numpy())
    # Gold labels used as predictions give the gold tags back, except where a word has no
    # piece (the zero width space) or is cut (sentence 0 beyond 4 pieces): those read "O".
    predicted = np.maximum(labels.numpy(), 0)
    tags = tags_from_predictions(predicted, positions, CONLL_LABELS)
    assert tags == [["B-PER", "O", "O", "B-LOC", "O", "O"], ["B-MISC", "O", "O"], ["O"],
                    ["B-LOC", "I-LOC"], ["B-PER"]]
    assert tags_from_predictions(predicted, tf.ragged.constant(positions), CONLL_LABELS) == tags
    logits = np.eye(len(CONLL_LABELS))[predicted]
    assert tags_from_predictions(logits, positions, CONLL_LABELS) == tags
    with pytest.raises(ValueError, match="prediction rows"):
        tags_from_predictions(predicted[:2], positions, CONLL_LABELS)
    with pytest.raises(ValueError, match="must be"):
        tags_from_predictions(predicted[0], positions, CONLL_LABELS)


class _NameSpotter:
    """A stand-in token classifier: B-PER on the piece "john", O elsewhere."""

    def __init__(self, john_id: int):
        self.john_id = john_id
        self.batch_shapes = []

    def predict(self, dataset, verbose=0):
        token_ids = np.concatenate([batch["token_ids"].numpy() for batch in dataset])
        self.batch_shapes.append(token_ids.shape)
        return np.eye(len(CONLL_LABELS))[np.where(token_ids == self.john_id, 7, 0)]


def test_predict_word_tags_counts_words_without_a_piece():
    model = _NameSpotter(VOCAB.index("john"))
    tags, missing = predict_word_tags(model, SENTENCES, preprocessor(6), CONLL_LABELS,
                                      batch_size=2)
    assert tags == [["B-PER", "O", "O", "O", "O", "O"], ["O", "O", "O"], ["O"], ["O", "O"],
                    ["B-PER"]]
    # "John" in sentence 1 comes after 4 pieces of "unaffables": cut, like sentence 0's tail.
    assert missing == 2 + 2
    assert model.batch_shapes == [(5, 6)]
    # Grouped by length: rows of 3-4 real tokens (padded to 4) and of 6 (padded to 6).
    model.batch_shapes = []
    assert predict_word_tags(model, SENTENCES, preprocessor(6), CONLL_LABELS,
                             pad_to_multiple_of=4) == (tags, missing)
    assert sorted(model.batch_shapes) == [(2, 6), (3, 4)]
    calls = []
    predict_word_tags(model, SENTENCES, preprocessor(6), CONLL_LABELS,
                      predict=lambda m, d: calls.append(m) or m.predict(d))
    assert calls == [model]
    with pytest.raises(ValueError, match="per-token logits"):
        predict_word_tags(model, SENTENCES, preprocessor(6), CONLL_LABELS,
                          predict=lambda m, d: np.zeros([5, 9]))


def test_dataset_errors_are_clear():
    pre = preprocessor()
    with pytest.raises(ValueError, match="label_names"):
        conll_dataset(SENTENCES, TAGS, pre)
    with pytest.raises(ValueError, match="Sentence 2: 1 words but 2 tags"):
        conll_dataset(SENTENCES, TAGS[:2] + [["O", "O"]] + TAGS[3:], pre, CONLL_LABELS)
    with pytest.raises(ValueError, match="Sentence 0, word 0: tag 'B-XYZ'"):
        conll_dataset([["a"]], [["B-XYZ"]], pre, CONLL_LABELS)
    with pytest.raises(ValueError, match="lists of words"):
        conll_dataset(["John", "lives"], None, pre)
    assert IGNORE_LABEL == -1
