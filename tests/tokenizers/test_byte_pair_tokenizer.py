"""Parity of the in-graph BytePairTokenizer with Hugging Face's GPT2TokenizerFast."""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

transformers = pytest.importorskip("transformers")
keras = pytest.importorskip("keras")

from keras_llm.tokenizers import BytePairTokenizer  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
GPT2_DIR = DATA_DIR / "tokenizers" / "gpt2"

HARD_STRINGS = [
    "hello world",
    # Blank lines: GPT-2's `\s+(?!\S)` gives two "\n" tokens (198, 198), not one "\n\n".
    "First paragraph.\n\nSecond paragraph.\n\n\nThird.",
    "  \n  x",
    "a   b\t\t c \t d  \t",
    "   leading spaces and trailing   ",
    "\t\ttabs\tand\t\t\n\n  mixed \n",
    "end with blank lines\n\n",
    " ",
    "\n",
    "\n\n\n",
    "12345 3.14 1,000,000 -42 1e10 ½ ² ٣",
    "I'm you'll they'd we've she's it't 're I'M YOU'LL THEY'D",
    "a  's 'sb x.'s",
    "emoji 😀 🥰 👍🏽 👨\u200d👩\u200d👧 🇫🇷",
    "中文字符 abc中def 日本語のテキスト 한국어",
    "café naïve Ångström résumé ÀÉÎÕÜ ß",
    "combining e\u0301 a\u0308 n\u0303 \u0301alone",
    "text<|endoftext|>more <|endoftext|> <|endoftext|><|endoftext|>x",
    "<|endoftext|>",
    "<|endoftext| < |endoftext|> <|ENDOFTEXT|>",
    "",
    "nul\x00byte \x00 and \x01\x7f controls",
    "nbsp\u00a0\u00a0word ideographic\u3000\u3000space em\u2003\u2003x ls\u2028ps\u2029",
    "aaaaaaaaaaaaaaa ========== ---------- !!!!!!",
    "https://example.com/path?q=1&r=2#frag user@mail.org",
    "def f(x):\n    return x ** 2  # comment\n",
    "Привет, МИР! مرحبا עברית हिन्दी ภาษาไทย",
    "zero\u200bwidth\ufeffbom \ufffd replacement",
    # Letters/digits newer than RE2's Unicode tables (Unicode 16).
    "\U00013460\U00013461 \U00016130\U00016131 \u1c89x",
]


@pytest.fixture(scope="module")
def gpt2_dir() -> Path:
    if not (GPT2_DIR / "encoder.json").is_file() or not (GPT2_DIR / "vocab.bpe").is_file():
        pytest.skip(f"GPT-2 vocabulary (encoder.json, vocab.bpe) not found in {GPT2_DIR}")
    return GPT2_DIR


@pytest.fixture(scope="module")
def hf_dir(gpt2_dir, tmp_path_factory) -> Path:
    # `GPT2TokenizerFast(vocab_file=..., merges_file=...)` silently encodes everything to [];
    # `from_pretrained` on a folder with the HF file names works.
    folder = tmp_path_factory.mktemp("gpt2_hf")
    shutil.copy(gpt2_dir / "encoder.json", folder / "vocab.json")
    shutil.copy(gpt2_dir / "vocab.bpe", folder / "merges.txt")
    return folder


@pytest.fixture(scope="module")
def hf_tokenizer(hf_dir):
    hf = transformers.GPT2TokenizerFast.from_pretrained(str(hf_dir))
    # A broken oracle must fail loudly, not agree with everything on [].
    assert hf("hello world")["input_ids"] == [31373, 995]
    return hf


@pytest.fixture(scope="module")
def tokenizer(gpt2_dir) -> BytePairTokenizer:
    return BytePairTokenizer.from_pretrained(gpt2_dir)


def _assert_same_ids(texts, ours, hf_tokenizer):
    expected = hf_tokenizer(list(texts))["input_ids"]
    diffs = [(t, o, e) for t, o, e in zip(texts, ours, expected, strict=True) if o != e]
    assert not diffs, f"{len(diffs)} texts differ:\n" + "\n".join(
        f"{t[:200]!r}: ours={hf_tokenizer.convert_ids_to_tokens(o)[:40]} "
        f"hf={hf_tokenizer.convert_ids_to_tokens(e)[:40]}"
        for t, o, e in diffs[:5]
    )


def _assert_round_trip(tokenizer, texts):
    decoded = tokenizer.detokenize(tokenizer(texts)).numpy().tolist()
    assert decoded == [t.encode("utf-8") for t in texts]


def _shakespeare_chunks(size: int = 2000) -> list[str]:
    path = DATA_DIR / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.skip(f"tiny Shakespeare not found at {path}")
    text = path.read_text(encoding="utf-8")
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_hard_strings_match_hf(tokenizer, hf_tokenizer):
    ours = tokenizer(HARD_STRINGS)
    assert isinstance(ours, tf.RaggedTensor)
    assert ours.dtype == tf.int32
    _assert_same_ids(HARD_STRINGS, ours.to_list(), hf_tokenizer)
    _assert_round_trip(tokenizer, HARD_STRINGS)


def test_known_encodings(tokenizer):
    assert tokenizer("hello world").numpy().tolist() == [31373, 995]
    # The blank line stays two "\n" tokens, as in HF (keras-hub gives one "\n\n", 628).
    assert tokenizer("a\n\nb").numpy().tolist() == [64, 198, 198, 65]
    assert tokenizer("  \n  x").numpy().tolist() == [220, 220, 198, 220, 2124]
    # HF's contraction alternatives are case-sensitive: "'M" is not one.
    assert tokenizer("I'm I'M").numpy().tolist() == [40, 1101, 314, 6, 44]
    assert tokenizer("x<|endoftext|>y").numpy().tolist() == [87, 50256, 88]
    assert tokenizer("").numpy().tolist() == []


def test_tiny_shakespeare_head_matches_hf(tokenizer, hf_tokenizer):
    chunks = _shakespeare_chunks()[:40]
    _assert_same_ids(chunks, tokenizer(chunks).to_list(), hf_tokenizer)


def test_tiny_shakespeare_all_chunks_match_hf(tokenizer, hf_tokenizer):
    chunks = _shakespeare_chunks()
    assert len(chunks) == 558
    ours = tokenizer(chunks)
    _assert_same_ids(chunks, ours.to_list(), hf_tokenizer)
    assert tokenizer.detokenize(ours).numpy().tolist() == [c.encode("utf-8") for c in chunks]


def test_sst2_dev_matches_hf(tokenizer, hf_tokenizer):
    path = DATA_DIR / "glue" / "SST-2" / "dev.tsv"
    if not path.is_file():
        pytest.skip(f"SST-2 dev set not found at {path}")
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["sentence", "label"]
    sentences = [row[0] for row in rows[1:]]
    assert len(sentences) == 872
    _assert_same_ids(sentences, tokenizer(sentences).to_list(), hf_tokenizer)
    _assert_round_trip(tokenizer, sentences)


def test_random_whitespace_heavy_strings_match_hf(tokenizer, hf_tokenizer):
    # Mixes of Unicode whitespace, contractions, marks and special tokens hit the regex edges.
    alphabet = list(" \t\n\r\x0b\x0c\x85\xa0\u2003\u3000\u2028") * 3 + [
        *"abcXYZ'sStmMdlrve019.,!?-_=é中😀\u0301\u200d\x00\x01",
        "'s", "'ll", "'M", "<|endoftext|>", "\U00013460", "\U00016130",
    ]  # fmt: skip
    rng = random.Random(0)
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 30))) for _ in range(3000)]
    _assert_same_ids(texts, tokenizer(texts).to_list(), hf_tokenizer)
    _assert_round_trip(tokenizer, texts)


def test_add_prefix_space_matches_hf(gpt2_dir, hf_dir):
    hf = transformers.GPT2TokenizerFast.from_pretrained(str(hf_dir), add_prefix_space=True)
    tokenizer = BytePairTokenizer.from_pretrained(gpt2_dir, add_prefix_space=True)
    texts = ["hello world", " already spaced", "a<|endoftext|>b", "", "\nnewline", "  two"]
    _assert_same_ids(texts, tokenizer(texts).to_list(), hf)
    assert tokenizer("hello").numpy().tolist() == [23748]


def test_shapes_and_sequence_length(tokenizer, gpt2_dir):
    scalar = tokenizer("hello world")
    assert isinstance(scalar, tf.Tensor) and scalar.shape.rank == 1
    assert tokenizer(["", "hello"]).to_list() == [[], [31373]]
    batch = tokenizer(tf.constant([["hello world", "a"], ["", "b"]]))
    assert batch.to_list() == [[[31373, 995], [64]], [[], [65]]]

    padded = BytePairTokenizer.from_pretrained(gpt2_dir, sequence_length=3)
    dense = padded(["hello world", "a b c d", ""])
    assert isinstance(dense, tf.Tensor)
    assert dense.numpy().tolist() == [[31373, 995, 0], [64, 275, 269], [0, 0, 0]]
    assert padded("hello").numpy().tolist() == [31373, 0, 0]


def test_runs_in_tf_data_and_tf_function(tokenizer):
    texts = ["Hello world!", "a\n\nb  \n  x", "", "<|endoftext|> 中文 😀"]
    expected = tokenizer(texts).to_list()

    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(tokenizer)
    assert [row for batch in dataset for row in batch.to_list()] == expected

    unbatched = tf.data.Dataset.from_tensor_slices(texts).map(tokenizer)
    assert [ids.numpy().tolist() for ids in unbatched] == expected

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(x):
        return tokenizer(x)

    ids = tokenize(tf.constant(texts))
    assert ids.to_list() == expected

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.int32)])
    def detokenize(x):
        return tokenizer.detokenize(x)

    assert detokenize(ids).numpy().tolist() == [t.encode("utf-8") for t in texts]


def test_saved_model_round_trip(tokenizer, tmp_path):
    class Module(tf.Module):
        def __init__(self, tokenizer):
            super().__init__()
            self.tokenizer = tokenizer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def tokenize(self, x):
            ids = self.tokenizer(x)
            return {"values": ids.flat_values, "row_lengths": ids.row_lengths()}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def round_trip(self, x):
            return self.tokenizer.detokenize(self.tokenizer(x))

    texts = ["Hello world!\n\nBye.", "", "<|endoftext|>x", "café 😀  \t"]
    tf.saved_model.save(Module(tokenizer), str(tmp_path / "saved"))
    restored = tf.saved_model.load(str(tmp_path / "saved"))
    out = restored.tokenize(tf.constant(texts))
    ids = tf.RaggedTensor.from_row_lengths(out["values"], out["row_lengths"])
    assert ids.to_list() == tokenizer(texts).to_list()
    assert restored.round_trip(tf.constant(texts)).numpy().tolist() == [
        t.encode("utf-8") for t in texts
    ]
    with pytest.raises(tf.errors.InvalidArgumentError, match="not valid UTF-8"):
        restored.tokenize(tf.constant([b"caf\xe9"]))


def test_vocabulary_accessors(tokenizer, gpt2_dir):
    assert tokenizer.vocabulary_size() == 50257
    vocab = tokenizer.get_vocabulary()
    assert len(vocab) == 50257 and vocab[31373] == "hello" and vocab[-1] == "<|endoftext|>"
    assert tokenizer.token_to_id("hello") == 31373
    assert tokenizer.token_to_id("Ġworld") == 995
    assert tokenizer.id_to_token(995) == "Ġworld"
    assert tokenizer.end_token_id == 50256
    with pytest.raises(KeyError, match="not in the vocabulary"):
        tokenizer.token_to_id("not-a-token")
    with pytest.raises(IndexError):
        tokenizer.id_to_token(50257)
    assert tokenizer.detokenize(tf.constant([50256, 31373])).numpy() == b"<|endoftext|>hello"


def test_config_round_trip(tokenizer):
    config = tokenizer.get_config()
    assert config["vocabulary"]["hello"] == 31373
    assert len(config["merges"]) == 50000 and config["merges"][0] == "Ġ t"
    restored = BytePairTokenizer.from_config(config)
    deserialized = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(tokenizer)
    )
    assert isinstance(deserialized, BytePairTokenizer)
    expected = tokenizer(HARD_STRINGS).to_list()
    assert restored(HARD_STRINGS).to_list() == expected
    assert deserialized(HARD_STRINGS).to_list() == expected
    assert deserialized.get_config() == config


def test_small_vocabulary_and_docstring_example():
    vocab = {"<|endoftext|>": 0, "a": 1, "b": 2, "Ġ": 3, "ab": 4, "Ġab": 5, "aa": 6}
    tokenizer = BytePairTokenizer(vocab, ["a b", "Ġ ab", "a a"])
    assert tokenizer(["ab ab", "ba<|endoftext|>"]).to_list() == [[4, 5], [2, 1, 0]]
    # Overlapping occurrences of one merge are taken left to right: "aa" "aa" "a".
    assert tokenizer("aaaaa").numpy().tolist() == [6, 6, 1]
    # Bytes without a vocabulary entry are dropped (GPT-2 has no unknown token).
    assert tokenizer("azb").numpy().tolist() == [1, 2]
    with pytest.raises(ValueError, match="unsplittable_tokens"):
        BytePairTokenizer({"a": 0}, [])
    assert BytePairTokenizer({"a": 0}, [], unsplittable_tokens=None).end_token_id is None
    with pytest.raises(ValueError, match="not in the vocabulary"):
        BytePairTokenizer({"a": 0}, ["a c"], unsplittable_tokens=None)
    with pytest.raises(ValueError, match="'a b'"):
        BytePairTokenizer({"a": 0}, ["abc"], unsplittable_tokens=None)


def test_from_pretrained_layouts_and_missing_files(tokenizer, hf_dir, tmp_path):
    # HF layout (vocab.json + merges.txt) gives the same tokenizer as GPT-2's.
    hf_layout = BytePairTokenizer.from_pretrained(hf_dir)
    assert hf_layout(HARD_STRINGS[:5]).to_list() == tokenizer(HARD_STRINGS[:5]).to_list()
    with pytest.raises(FileNotFoundError, match="encoder.json") as error:
        BytePairTokenizer.from_pretrained(tmp_path)
    assert str(tmp_path) in str(error.value) and "merges.txt" in str(error.value)
    with pytest.raises(FileNotFoundError, match="nope"):
        BytePairTokenizer.from_pretrained(tmp_path / "nope")
    (tmp_path / "encoder.json").write_text("{}", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="vocab.bpe"):
        BytePairTokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope"):
        BytePairTokenizer(str(tmp_path / "nope.json"), [])


def test_corrupt_files_raise_clear_errors(tmp_path):
    (tmp_path / "encoder.json").write_text('{"a": 0, "b": ', encoding="utf-8")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\na b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"encoder\.json.*not valid JSON"):
        BytePairTokenizer.from_pretrained(tmp_path)
    (tmp_path / "encoder.json").write_text('["a", "b"]', encoding="utf-8")
    with pytest.raises(ValueError, match="JSON object"):
        BytePairTokenizer.from_pretrained(tmp_path)
    (tmp_path / "encoder.json").write_text('{"a": 0, "b": 1, "ab": 2}', encoding="utf-8")
    tokenizer = BytePairTokenizer.from_pretrained(tmp_path, unsplittable_tokens=None)
    assert tokenizer.merges == ["a b"]
    assert tokenizer("ab").numpy().tolist() == [2]


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
