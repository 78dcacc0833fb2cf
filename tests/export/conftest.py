"""Small random models, exported once per session, shared by the export tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.export import export_saved_model

REPO = Path(__file__).resolve().parents[2]
VOCAB = REPO / "keras_llm" / "data" / "sample" / "vocab.txt"
GPT2_TOKENIZER = REPO.parent / "shared" / "data" / "tokenizers" / "gpt2"
SEQUENCE_LENGTH = 32
SENTENCES = [
    "a gripping, beautiful film.",
    "dull and far too long.",
    "",
    "the acting is great but the story is boring and the ending is a mess.",
]


@dataclasses.dataclass
class Exported:
    """A model, what it was exported with, where, and the SavedModel loaded back."""

    model: keras.Model
    preprocessor: Any
    path: str
    options: dict

    @property
    def loaded(self):
        if not hasattr(self, "_loaded"):
            self._loaded = tf.saved_model.load(self.path)
        return self._loaded

    def signature(self, name: str = "serving_default"):
        return self.loaded.signatures[name]


def tiny_bert(vocab_size: int) -> keras_llm.models.Bert:
    return keras_llm.models.Bert(vocab_size=vocab_size, num_layers=2, num_heads=2, hidden_size=32,
                                 intermediate_size=64, max_sequence_length=64)


@pytest.fixture(scope="session")
def preprocessor() -> keras_llm.tokenizers.BertPreprocessor:
    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(str(VOCAB))
    return keras_llm.tokenizers.BertPreprocessor(tokenizer, sequence_length=SEQUENCE_LENGTH)


def _export(tmp_path_factory, name: str, model, preprocessor, **options) -> Exported:
    keras.utils.set_random_seed(1)
    base = tmp_path_factory.mktemp(name)
    path = export_saved_model(model, base, preprocessor, **options)
    return Exported(model, preprocessor, path, options)


def _built(model, preprocessor):
    model(preprocessor(["warm up"]))
    return model


@pytest.fixture(scope="session")
def classifier_export(tmp_path_factory, preprocessor) -> Exported:
    keras.utils.set_random_seed(2)
    bert = tiny_bert(preprocessor.tokenizer.vocabulary_size())
    model = _built(keras_llm.models.BertClassifier(
        bert, num_classes=3, label_names=["negative", "neutral", "positive"]), preprocessor)
    return _export(tmp_path_factory, "classifier", model, preprocessor,
                   warmup_examples=["a fine film", "dull"])


@pytest.fixture(scope="session")
def pair_regression_export(tmp_path_factory, preprocessor) -> Exported:
    keras.utils.set_random_seed(3)
    model = keras_llm.models.BertClassifier(
        tiny_bert(preprocessor.tokenizer.vocabulary_size()), num_classes=1)
    model(preprocessor((["a"], ["b"])))
    return _export(tmp_path_factory, "regression", model, preprocessor, pair=True)


@pytest.fixture(scope="session")
def qa_export(tmp_path_factory, preprocessor) -> Exported:
    keras.utils.set_random_seed(4)
    model = _built(keras_llm.models.BertQuestionAnswerer(
        tiny_bert(preprocessor.tokenizer.vocabulary_size())), preprocessor)
    return _export(tmp_path_factory, "qa", model, preprocessor, signatures=("text",))


@pytest.fixture(scope="session")
def tagger_export(tmp_path_factory, preprocessor) -> Exported:
    keras.utils.set_random_seed(5)
    model = _built(keras_llm.models.BertTokenClassifier(
        tiny_bert(preprocessor.tokenizer.vocabulary_size()), num_classes=3,
        label_names=["O", "B-X", "I-X"]), preprocessor)
    return _export(tmp_path_factory, "tagger", model, preprocessor, signatures=("text",))


@pytest.fixture(scope="session")
def embedding_export(tmp_path_factory, preprocessor) -> Exported:
    keras.utils.set_random_seed(6)
    model = _built(tiny_bert(preprocessor.tokenizer.vocabulary_size()), preprocessor)
    return _export(tmp_path_factory, "embedding", model, preprocessor)


@pytest.fixture(scope="session")
def gpt_tokenizer() -> keras_llm.tokenizers.BytePairTokenizer:
    if not GPT2_TOKENIZER.is_dir():
        pytest.skip(f"GPT-2 tokenizer files {GPT2_TOKENIZER} are absent")
    return keras_llm.tokenizers.BytePairTokenizer.from_pretrained(str(GPT2_TOKENIZER))


def _gpt(tokenizer):
    keras.utils.set_random_seed(7)
    lm = keras_llm.models.GptCausalLM(keras_llm.models.Gpt.from_preset("gpt2_tiny"),
                                      tokenizer=tokenizer)
    lm({"token_ids": np.array([[464, 2068]], "int32")})
    return lm


@pytest.fixture(scope="session")
def gpt_export(tmp_path_factory, gpt_tokenizer) -> Exported:
    """Greedy, decode loop not compiled (what the stock CPU model server runs)."""
    return _export(tmp_path_factory, "gpt", _gpt(gpt_tokenizer), None, max_new_tokens=8,
                   max_prompt_length=24, warmup_examples=["Hello"])


@pytest.fixture(scope="session")
def gpt_sampling_export(tmp_path_factory, gpt_tokenizer) -> Exported:
    """Top-k sampling with a `seed` input, decode loop compiled with XLA."""
    return _export(tmp_path_factory, "gpt_sampling", _gpt(gpt_tokenizer), None,
                   max_new_tokens=8, max_prompt_length=24, strategy="top_k", top_k=5,
                   jit_compile=True, signatures=("text",))
