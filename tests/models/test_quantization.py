"""`model.quantize("int8")` (Keras' built-in) on every task model: which layers become int8,
outputs stay close to float, tied output heads read the quantized embedding correctly, and a
quantized model saves to `.keras` and loads back identical (TensorFlow and JAX)."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_llm.layers import project_onto_embeddings
from keras_llm.models import (
    Bert,
    BertClassifier,
    BertPretrainer,
    BertQuestionAnswerer,
    BertTokenClassifier,
    Gpt,
    GptCausalLM,
    T5Seq2SeqLM,
)
from keras_llm.models.t5 import T5
from tests.conftest import read_sst2

TINY_BERT = dict(vocab_size=100, num_layers=2, num_heads=2, hidden_size=16,
                 intermediate_size=32, max_sequence_length=12)
BERT_INPUTS = {
    "token_ids": np.array([[2, 10, 11, 3, 0], [2, 20, 3, 30, 3]]),
    "segment_ids": np.array([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]),
    "padding_mask": np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]),
}
SEQ2SEQ_INPUTS = {"encoder_token_ids": np.array([[5, 6, 7, 1], [8, 9, 1, 0]]),
                  "encoder_padding_mask": np.array([[1, 1, 1, 1], [1, 1, 1, 0]]),
                  "decoder_token_ids": np.array([[0, 4, 5], [0, 6, 7]])}


def _bert_task(make):
    return lambda: make(Bert(**TINY_BERT))


TASKS = {
    "classifier": (_bert_task(lambda b: BertClassifier(b, num_classes=3)), BERT_INPUTS),
    "question_answerer": (_bert_task(BertQuestionAnswerer), BERT_INPUTS),
    "token_classifier": (_bert_task(lambda b: BertTokenClassifier(b, num_classes=5)),
                         BERT_INPUTS),
    "pretrainer": (_bert_task(BertPretrainer),
                   {**BERT_INPUTS, "mask_positions": np.array([[1, 2], [1, 3]])}),
    "gpt": (lambda: GptCausalLM(Gpt.from_preset("gpt2_tiny", vocab_size=100)),
            {"token_ids": BERT_INPUTS["token_ids"]}),
    "t5_tied": (lambda: T5Seq2SeqLM(T5.from_preset("t5_tiny", vocab_size=100)), SEQ2SEQ_INPUTS),
    "t5_lm_head": (lambda: T5Seq2SeqLM(T5.from_preset("t5_tiny", vocab_size=100,
                                                      tie_embeddings=False)), SEQ2SEQ_INPUTS),
}


def _outputs(model, inputs) -> dict:
    outputs = model(inputs, training=False)
    if not isinstance(outputs, dict):
        outputs = {"output": outputs}
    return {k: ops.convert_to_numpy(v) for k, v in outputs.items()}


def _json(config: dict) -> dict:
    """`config` as its JSON text reads back (the recorded build shapes are tuples or lists)."""
    return json.loads(json.dumps(config))


def _quantize(model) -> None:
    with warnings.catch_warnings():  # "Layer Dropout does not have a `quantize` method".
        warnings.simplefilter("ignore", UserWarning)
        model.quantize("int8")


QUANTIZABLE_TYPES = (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Embedding)


def _quantizable(model) -> list:
    return [layer for layer in model._flatten_layers()
            if isinstance(layer, QUANTIZABLE_TYPES)]


@pytest.mark.parametrize("name", list(TASKS))
def test_int8_outputs_close_and_keras_round_trip(name, tmp_path):
    make, inputs = TASKS[name]
    model = make()
    expected = _outputs(model, inputs)
    _quantize(model)

    # Every Dense, EinsumDense and Embedding of ours is int8, with int8 weights, float scales.
    layers = _quantizable(model)
    assert layers and all(layer.quantization_mode == "int8" for layer in layers)
    assert all("int8" in [v.dtype for v in layer.weights] for layer in layers)
    quantized = _outputs(model, inputs)
    for key, value in expected.items():
        # Random weights: ~1% of the output's range (a tied head that read the raw int8
        # embedding values would be off by a factor of ~100).
        scale = np.abs(value).max()
        assert np.abs(quantized[key] - value).max() <= 0.05 * scale + 1e-3, key

    path = tmp_path / f"{name}.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert _json(restored.get_config()) == _json(model.get_config())
    assert [(layer.name, layer.quantization_mode) for layer in _quantizable(restored)] == [
        (layer.name, layer.quantization_mode) for layer in layers]
    for key, value in _outputs(restored, inputs).items():
        np.testing.assert_allclose(value, quantized[key], atol=1e-6, err_msg=key)
    # The loaded model saves again (its config now holds a DTypePolicyMap).
    restored.save(tmp_path / "again.keras")
    again = keras.models.load_model(tmp_path / "again.keras")
    for key, value in _outputs(again, inputs).items():
        np.testing.assert_allclose(value, quantized[key], atol=1e-6, err_msg=key)


def test_quantized_config_round_trips_unbuilt():
    model = BertClassifier(Bert(**TINY_BERT), num_classes=2)
    model(BERT_INPUTS)
    float_config = model.get_config()
    assert float_config["backbone"]["config"]["dtype"]["class_name"] == "DTypePolicy"
    assert "dtype" not in float_config  # A float task's config is unchanged.
    _quantize(model)
    config = model.get_config()
    assert config["backbone"]["config"]["dtype"]["class_name"] == "DTypePolicyMap"
    assert config["dtype"]["class_name"] == "DTypePolicyMap"  # The quantized classifier head.
    clone = BertClassifier.from_config(config)
    assert clone.get_config() == config
    clone(BERT_INPUTS)  # Built from the config: int8 variables where the original has them.
    assert [layer.quantization_mode for layer in _quantizable(clone)] == [
        layer.quantization_mode for layer in _quantizable(model)]


def test_backbone_built_before_its_task_round_trips(tmp_path):
    """Layer paths differ (`bert/...` vs `bert_classifier/bert/...`); the map matches both."""
    backbone = Bert(**TINY_BERT)
    backbone(BERT_INPUTS)
    model = BertClassifier(backbone, num_classes=2)
    model(BERT_INPUTS)
    _quantize(model)
    expected = _outputs(model, BERT_INPUTS)
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(_outputs(restored, BERT_INPUTS)["output"], expected["output"],
                               atol=1e-6)


def test_partially_quantized_model_round_trips(tmp_path):
    model = GptCausalLM(Gpt.from_preset("gpt2_tiny", vocab_size=100))
    inputs = {"token_ids": BERT_INPUTS["token_ids"]}
    model(inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.quantize("int8", filters=lambda layer: layer.name == "intermediate")
    modes = [(layer.name, layer.quantization_mode) for layer in _quantizable(model)]
    assert {m for n, m in modes if n == "intermediate"} == {"int8"}
    assert {m for n, m in modes if n != "intermediate"} == {None}
    expected = _outputs(model, inputs)
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert [(layer.name, layer.quantization_mode) for layer in _quantizable(restored)] == modes
    np.testing.assert_allclose(_outputs(restored, inputs)["output"], expected["output"], atol=1e-6)


@pytest.mark.parametrize("name", ["gpt", "t5_tied"])
def test_quantized_generation_survives_save(name, tmp_path):
    make, _ = TASKS[name]
    model = make()
    prompts = np.array([[5, 6, 7], [8, 9, 10]])
    float_ids = model.generate(prompts, max_new_tokens=4)
    _quantize(model)
    ids = model.generate(prompts, max_new_tokens=4)
    assert ids.shape == float_ids.shape
    model.save(tmp_path / "lm.keras")
    restored = keras.models.load_model(tmp_path / "lm.keras")
    np.testing.assert_array_equal(restored.generate(prompts, max_new_tokens=4), ids)


def test_mixed_precision_int8_round_trip(tmp_path):
    model = BertClassifier(Bert(**TINY_BERT, dtype="mixed_bfloat16"), num_classes=2)
    model(BERT_INPUTS)
    _quantize(model)
    assert model.backbone.pooler.dtype_policy.name == "int8_from_mixed_bfloat16"
    expected = _outputs(model, BERT_INPUTS)["output"]
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert restored.backbone.compute_dtype == "bfloat16"
    assert restored.backbone.pooler.dtype_policy.name == "int8_from_mixed_bfloat16"
    np.testing.assert_allclose(_outputs(restored, BERT_INPUTS)["output"].astype("float32"),
                               expected.astype("float32"), atol=1e-6)


def test_project_onto_embeddings_float_and_int8():
    embedding = keras.layers.Embedding(50, 8)
    embedding.build((None,))
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    matrix = ops.convert_to_numpy(embedding.embeddings)
    float_logits = ops.convert_to_numpy(project_onto_embeddings(x, embedding))
    np.testing.assert_allclose(float_logits, x @ matrix.T, rtol=1e-5, atol=1e-6)

    embedding.quantize("int8")
    assert ops.convert_to_numpy(embedding.embeddings).dtype == np.int8
    # What the quantized layer itself returns for every row: the dequantized matrix.
    dequantized = ops.convert_to_numpy(embedding(np.arange(50)))
    logits = ops.convert_to_numpy(project_onto_embeddings(x, embedding))
    np.testing.assert_allclose(logits, x @ dequantized.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, float_logits, atol=0.02 * np.abs(float_logits).max())


@pytest.mark.slow
def test_minilm_sst2_int8_agrees_with_float(minilm_dir, shared_data):
    """The real MiniLM checkpoint with a classifier head fitted on SST-2: int8 predictions
    on real dev sentences agree with float ones."""
    from keras_llm.tokenizers import BertPreprocessor

    preprocessor = BertPreprocessor.from_pretrained(minilm_dir, sequence_length=48)
    model = BertClassifier.from_pretrained(minilm_dir, num_classes=2)
    # A quick head (logistic regression on frozen pooled outputs) so the margins are real.
    train, labels = read_sst2(shared_data, "train", limit=512)
    pooled = ops.convert_to_numpy(model.backbone.predict(
        preprocessor(train), batch_size=64, verbose=0)["pooled_output"])
    head = keras.Sequential([keras.Input((pooled.shape[1],)), keras.layers.Dense(2)])
    head.compile(keras.optimizers.Adam(1e-2),
                 keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    head.fit(pooled, labels, epochs=40, batch_size=64, verbose=0)
    model.classifier.set_weights(head.layers[-1].get_weights())

    sentences, dev_labels = read_sst2(shared_data, "dev", limit=256)
    inputs = preprocessor(sentences)
    float_logits = ops.convert_to_numpy(model.predict(inputs, batch_size=64, verbose=0))
    _quantize(model)
    int8_logits = ops.convert_to_numpy(model.predict(inputs, batch_size=64, verbose=0))
    agreement = (float_logits.argmax(-1) == int8_logits.argmax(-1)).mean()
    float_accuracy = (float_logits.argmax(-1) == dev_labels).mean()
    int8_accuracy = (int8_logits.argmax(-1) == dev_labels).mean()
    diff = np.abs(float_logits - int8_logits)
    print(f"int8 vs float: max |d logit| {diff.max():.4f}, mean {diff.mean():.4f}, "
          f"argmax agreement {agreement:.3f}, accuracy {float_accuracy:.3f} -> {int8_accuracy:.3f}")
    # MiniLM's pooler output is a weak SST-2 feature (a linear head reaches ~0.6-0.7), so
    # margins are small and this agreement is a floor; a fine-tuned MiniLM agrees on 99%
    # of the dev set. A tied head or a scale read wrongly would agree on ~half.
    assert float_accuracy > 0.56  # The head learned something (majority class 0.51).
    assert agreement >= 0.92
    assert abs(int8_accuracy - float_accuracy) <= 0.04
    assert diff.mean() <= 0.1 * np.abs(float_logits).max()


def test_generate_after_quantize_uses_the_quantized_weights():
    """A decode loop compiled before `quantize` read the float variables it replaced."""
    model = GptCausalLM(Gpt.from_preset("gpt2_tiny", vocab_size=100))
    prompts = np.array([[5, 6, 7], [8, 9, 10]])
    model.generate(prompts, max_new_tokens=4)
    _quantize(model)
    fresh = GptCausalLM.from_config(model.get_config())
    fresh.build(None)
    fresh.set_weights(model.get_weights())
    np.testing.assert_array_equal(model.generate(prompts, max_new_tokens=4),
                                  fresh.generate(prompts, max_new_tokens=4))
