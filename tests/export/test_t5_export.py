"""T5Seq2SeqLM export: strings in, generated strings out, equal to `generate`, in a process
that imports only TensorFlow and tensorflow-text."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_llm
from keras_llm.export import export_saved_model

RUNNER = Path(__file__).with_name("fresh_process_runner.py")
TEXTS = ["translate: the cat sat on the mat", "summarize: a long story about a dog", "hi"]


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spm")
    corpus = folder / "corpus.txt"
    corpus.write_text("".join(f"{t} number {i}\n" for i in range(200) for t in TEXTS))
    model_file = keras_llm.tokenizers.train_sentence_piece(str(corpus), str(folder / "sp"),
                                                           vocab_size=120, extra_ids=4,
                                                           hard_vocab_limit=False)
    tokenizer = keras_llm.tokenizers.SentencePieceTokenizer(model_file, add_end_token=True,
                                                            extra_ids=4)
    import keras

    keras.utils.set_random_seed(0)
    backbone = keras_llm.models.T5(vocab_size=tokenizer.vocabulary_size(), num_layers=2,
                                   num_heads=2, hidden_size=32, key_value_size=16,
                                   intermediate_size=64, dropout=0.0, max_sequence_length=64)
    model = keras_llm.models.T5Seq2SeqLM(backbone, tokenizer=tokenizer)
    model.build()
    return model


@pytest.mark.slow
def test_exported_t5_generates_like_the_model(t5, tmp_path):
    version = export_saved_model(t5, tmp_path / "t5", max_new_tokens=6,
                                 warmup_examples=TEXTS[:1])
    expected_ids = t5.generate(t5.tokenizer(TEXTS).to_list(), max_new_tokens=6)
    expected_text = t5.generate(TEXTS, max_new_tokens=6)
    calls = {
        "text": (version, "serving_default",
                 {"inputs": np.array(TEXTS, dtype=object), "max_new_tokens": np.int32(6)}),
        "short": (version, "serving_default",
                  {"inputs": np.array(TEXTS[:1], dtype=object), "max_new_tokens": np.int32(3)}),
    }
    (tmp_path / "calls.pkl").write_bytes(pickle.dumps(calls))
    result = subprocess.run([sys.executable, str(RUNNER), str(tmp_path / "calls.pkl"),
                             str(tmp_path / "out.pkl")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = pickle.loads((tmp_path / "out.pkl").read_bytes())
    assert outputs["__modules__"] == []
    lengths = outputs["text"]["generated_lengths"]
    for row, expected, length in zip(outputs["text"]["generated_token_ids"], expected_ids,
                                     lengths, strict=True):
        np.testing.assert_array_equal(row[:length], expected[:length])
    assert [t.decode() for t in outputs["text"]["generated_text"]] == expected_text
    assert outputs["short"]["generated_token_ids"].shape == (1, 3)
    np.testing.assert_array_equal(outputs["short"]["generated_token_ids"][0], expected_ids[0, :3])


def test_t5_export_rejects_beam_search_and_a_wrong_tokenizer(t5, tmp_path):
    from keras_llm.export import ExportError

    with pytest.raises(ValueError, match="Beam search is not exported"):
        export_saved_model(t5, tmp_path / "a", strategy="beam", max_new_tokens=6)
    with pytest.raises(ExportError, match="SentencePieceTokenizer"):
        export_saved_model(t5, tmp_path / "b", preprocessor=keras_llm.tokenizers.ByteTokenizer(),
                           max_new_tokens=6)
