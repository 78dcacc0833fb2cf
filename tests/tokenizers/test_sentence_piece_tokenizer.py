"""Parity of the in-graph SentencePieceTokenizer with Hugging Face's (T5) T5Tokenizer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import pytest
import tensorflow as tf

transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece", reason="pip install sentencepiece (in the [test] extra)")

from keras_llm.tokenizers import SentencePieceTokenizer, train_sentence_piece  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHAKESPEARE = DATA_DIR / "tinyshakespeare" / "input.txt"
SST2 = DATA_DIR / "glue" / "SST-2" / "dev.tsv"
TRAIN_CHARACTERS = 300_000  # ~1.5 s of training for a 1000-piece unigram model.

HARD_STRINGS = [
    "café naïve Ångström résumé",
    "ÀÉÎÕÜ ÇA VA? İstanbul ǅemal ß ẞ",
    "中文字符 abc中def 日本語のテキスト",
    "한국어 텍스트입니다",
    "µ ﬁ ﬂ ½ ¼ ² ™ ℃ Ⅳ",
    "emoji 😀 🥰 👍🏽 👨\u200d👩\u200d👧 🇫🇷",
    "multiple   spaces    here  ",
    "   leading and trailing   ",
    "tab\there\nnewline\r\nwin",
    "nbsp\u00a0ideographic\u3000space\u2003em",
    "zero\u200bwidth\ufeffbom",
    "control\x00nul\x01bell\x7fy",
    "",
    "   ",
    "special </s> tokens <pad> in <unk> text <extra_id_0> and<extra_id_99>x <extra_id_100>",
    "«guillemets» „quotes“ ¿qué? ¡sí! …ellipsis– — dash",
    "Привет, МИР! ΟΔΟΣ مرحبا עברית हिन्दी",
    "x" * 300,
]


def _strings(tensor: tf.Tensor) -> list[str]:
    return [s.decode("utf-8") for s in tensor.numpy().tolist()]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A 1000-piece T5-style unigram model trained on the start of tiny Shakespeare."""
    if not SHAKESPEARE.is_file():
        pytest.skip(f"tiny Shakespeare {SHAKESPEARE} is absent (a checkout without shared/)")
    folder = tmp_path_factory.mktemp("spm")
    train_file = folder / "train.txt"
    train_file.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:TRAIN_CHARACTERS], "utf-8")
    path = train_sentence_piece(train_file, folder / "spiece", vocab_size=1000, extra_ids=100)
    assert path == str(folder / "spiece.model")
    return folder


@pytest.fixture(scope="session")
def hf_tokenizer(model_dir):
    """HF's T5Tokenizer from the T5 folder layout, checked against the SentencePiece library.

    (``T5Tokenizer(vocab_file=...)`` silently ignores the file in transformers 5 and builds a
    4-piece vocabulary: never trust the oracle without this check.)
    """
    hf = transformers.T5Tokenizer.from_pretrained(str(model_dir))
    reference = spm.SentencePieceProcessor(model_file=str(model_dir / "spiece.model"))
    text = "First Citizen: Before we proceed any further, hear me speak."
    assert hf(text, add_special_tokens=False).input_ids == reference.encode(text)
    assert len(hf) == reference.get_piece_size() + 100
    return hf


@pytest.fixture(scope="session")
def texts() -> list[str]:
    """~500 real lines (Shakespeare not seen in training, SST-2) plus the hard strings."""
    lines = SHAKESPEARE.read_text(encoding="utf-8")[TRAIN_CHARACTERS:].splitlines()
    lines = [line for line in lines if line.strip()][:250]
    sentences = []
    if SST2.is_file():
        with open(SST2, encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
        sentences = [row[0] for row in rows[:250]]
    return lines + sentences + HARD_STRINGS


@pytest.fixture(scope="session")
def tokenizer(model_dir) -> SentencePieceTokenizer:
    return SentencePieceTokenizer.from_pretrained(model_dir)


def test_ids_match_hugging_face(tokenizer, hf_tokenizer, model_dir, texts):
    expected = [hf_tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    assert tokenizer(texts).to_list() == expected
    with_end = SentencePieceTokenizer(model_dir / "spiece.model", add_end_token=True, extra_ids=100)
    assert with_end(texts).to_list() == [hf_tokenizer(t).input_ids for t in texts]
    assert expected[-len(HARD_STRINGS) :][HARD_STRINGS.index("")] == []
    # A scalar gives a dense 1-D tensor; the empty string an empty row (or just </s>).
    assert tokenizer(texts[0]).numpy().tolist() == expected[0]
    assert tokenizer("").shape == (0,)
    assert with_end("").numpy().tolist() == [1]


def test_special_ids_and_sentinels_match_hugging_face(tokenizer, hf_tokenizer):
    assert tokenizer.vocabulary_size() == len(hf_tokenizer) == 1100
    assert (
        (tokenizer.pad_token_id, tokenizer.end_token_id, tokenizer.unknown_token_id)
        == (
            hf_tokenizer.pad_token_id,
            hf_tokenizer.eos_token_id,
            hf_tokenizer.unk_token_id,
        )
        == (0, 1, 2)
    )
    names = [f"<extra_id_{i}>" for i in range(100)]
    expected = hf_tokenizer.convert_tokens_to_ids(names)
    assert tokenizer.sentinel_ids(100) == expected
    assert expected[0] == 1099 and expected[-1] == 1000
    assert [tokenizer.token_to_id(n) for n in names] == expected
    assert [tokenizer.id_to_token(i) for i in expected] == names
    vocabulary = tokenizer.get_vocabulary()
    assert vocabulary == hf_tokenizer.convert_ids_to_tokens(list(range(1100)))
    with pytest.raises(KeyError):
        tokenizer.token_to_id("<extra_id_100>")
    with pytest.raises(IndexError):
        tokenizer.id_to_token(1100)
    with pytest.raises(ValueError, match="extra_ids=100"):
        tokenizer.sentinel_ids(101)


def test_detokenize_round_trips_and_matches_hf_decode(tokenizer, hf_tokenizer, texts):
    lines = [" ".join(t.split()) for t in texts[:250]]  # SentencePiece collapses whitespace.
    # Lines with a character the 1000-piece model lacks read back " ⁇ " there: leave them out.
    lines = [t for t, row in zip(lines, tokenizer(lines).to_list(), strict=True) if 2 not in row]
    assert len(lines) > 200
    ids = tokenizer(lines)
    assert _strings(tokenizer.detokenize(ids)) == lines
    # Sentinels inserted like span corruption does: rendered (and spaced) as HF's decode.
    sentinel = tokenizer.sentinel_ids(3)
    mixed = [
        row[:2] + [sentinel[0]] + row[2:5] + [sentinel[1]] + row[5:] + [sentinel[2]]
        for row in ids.to_list()[:50]
    ]
    decoded = tokenizer.detokenize(tf.ragged.constant(mixed, dtype=tf.int32))
    assert _strings(decoded) == [hf_tokenizer.decode(m) for m in mixed]
    assert tokenizer.detokenize(mixed[0]).numpy().decode() == hf_tokenizer.decode(mixed[0])


def test_tf_data_tf_function_and_saved_model(tokenizer, texts, tmp_path):
    sample = texts[:20] + texts[-len(HARD_STRINGS) :]
    expected = tokenizer(sample).to_list()

    dataset = tf.data.Dataset.from_tensor_slices(sample).batch(8).map(tokenizer)
    assert [row for batch in dataset for row in batch.to_list()] == expected

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(strings):
        return tokenizer(strings)

    assert tokenize(tf.constant(sample)).to_list() == expected

    class Module(tf.Module):
        def __init__(self, tokenizer):
            super().__init__()
            self.tokenizer = tokenizer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, strings):
            return self.tokenizer(strings)

    tf.saved_model.save(Module(tokenizer), str(tmp_path / "saved"))
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    assert restored(tf.constant(sample)).to_list() == expected
    # Resetting seeds clears TF's eager kernel cache; the model resources must survive it.
    keras.utils.set_random_seed(1)
    assert restored(tf.constant(sample)).to_list() == expected
    assert tokenizer(sample).to_list() == expected
    del restored
    assert tokenizer(sample).to_list() == expected


def test_config_round_trip_without_the_file(model_dir, tmp_path, texts):
    proto = (model_dir / "spiece.model").read_bytes()
    tokenizer = SentencePieceTokenizer(proto, add_end_token=True, extra_ids=100)
    config = json.loads(json.dumps(tokenizer.get_config()))
    restored = SentencePieceTokenizer.from_config(config)
    assert restored.get_config() == tokenizer.get_config()
    assert restored(texts[:30]).to_list() == tokenizer(texts[:30]).to_list()
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tokenizer))
    assert isinstance(clone, SentencePieceTokenizer)
    assert clone.sentinel_ids(2) == [1099, 1098]
    plain = SentencePieceTokenizer(proto)
    expected = plain(texts[:30]).to_list()
    del tokenizer, restored, clone  # Each owns its model resource; the others keep theirs.
    assert plain(texts[:30]).to_list() == expected
    # A bare .model file has no sentinels unless asked for.
    assert SentencePieceTokenizer.from_pretrained(model_dir / "spiece.model").extra_ids == 0


def test_errors(tokenizer, model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.model"):
        SentencePieceTokenizer(tmp_path / "missing.model")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SentencePieceTokenizer.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="spiece.model"):
        SentencePieceTokenizer.from_pretrained(tmp_path)
    corrupt = tmp_path / "corrupt.model"
    corrupt.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ValueError, match="corrupt.model.*not a valid SentencePiece model"):
        SentencePieceTokenizer(corrupt)
    with pytest.raises(ValueError, match="not a valid SentencePiece model"):
        SentencePieceTokenizer((model_dir / "spiece.model").read_bytes()[:100])
    with pytest.raises(ValueError, match="extra_ids"):
        SentencePieceTokenizer(model_dir / "spiece.model", extra_ids=-1)

    with pytest.raises(ValueError, match="not valid UTF-8"):
        tokenizer([b"caf\xe9"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(strings):
        return tokenizer(strings).flat_values

    with pytest.raises(tf.errors.InvalidArgumentError, match="not valid UTF-8"):
        tokenize(tf.constant([b"ok", b"\xff\xfe"]))
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        train_sentence_piece(tmp_path / "absent.txt", tmp_path / "m")
