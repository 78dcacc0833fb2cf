"""A classifier quantized with Keras' `model.quantize(...)` exports through `export_saved_model`:
int8 kernels and float scales in the SavedModel, the SavedModel loads and runs in a fresh process
without keras-llm, its outputs match the Keras quantized model, and it is smaller on disk.

Two int8 flavours are checked. Keras' default `quantize("int8")` also quantizes each token's
activations on the fly (`round(x * 127 / max|x|)`); a float rounding difference of 1e-7 between
eager Keras and the exported graph (grappler fuses float ops differently) can move such a rounding
by one step, so the two agree to about 1e-2 on MiniLM's logits, not 1e-4 (measured: max 0.05,
mean 0.002, every label equal over SST-2 dev) -- and the same holds between Keras' own eager and
`tf.function` calls. The SavedModel itself is deterministic (a fresh process reproduces the
in-process outputs). Weight-only int8 (`activation_quantizer=None`) has no data-dependent
rounding and matches Keras within 1e-4.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.export import export_saved_model
from tests.conftest import read_sst2
from tests.export import references
from tests.export.conftest import SENTENCES, tiny_bert

RUNNER = Path(__file__).with_name("fresh_process_runner.py")


def _quantize(model, weight_only: bool = False) -> None:
    config = keras.quantizers.Int8QuantizationConfig(activation_quantizer=None)
    with warnings.catch_warnings():  # "Layer Dropout does not have a `quantize` method".
        warnings.simplefilter("ignore", UserWarning)
        model.quantize("int8", config=config if weight_only else None)


def _variable_dtypes(version_dir: str) -> dict:
    reader = tf.train.load_checkpoint(str(Path(version_dir) / "variables" / "variables"))
    return reader.get_variable_to_dtype_map()


def _size(version_dir: str) -> int:
    return sum(p.stat().st_size for p in Path(version_dir).rglob("*") if p.is_file())


def _as_tensors(inputs: dict) -> dict:
    return {k: tf.constant(np.asarray(v, np.int32)) for k, v in inputs.items()}


@pytest.mark.parametrize("weight_only", [False, True], ids=["dynamic", "weight_only"])
def test_tiny_quantized_classifier_exports(tmp_path, preprocessor, weight_only):
    keras.utils.set_random_seed(2)
    model = keras_llm.models.BertClassifier(
        tiny_bert(preprocessor.tokenizer.vocabulary_size()), num_classes=3,
        label_names=["negative", "neutral", "positive"])
    model(preprocessor(["warm up"]))
    _quantize(model, weight_only)
    path = export_saved_model(model, tmp_path, preprocessor)

    assert tf.int8 in _variable_dtypes(path).values(), "no int8 variable in the SavedModel"
    signatures = tf.saved_model.load(path).signatures
    served = signatures["serving_default"](text=tf.constant(SENTENCES))
    from_ids = signatures["token_ids"](**_as_tensors(preprocessor(SENTENCES)))
    np.testing.assert_allclose(from_ids["logits"].numpy(), served["logits"].numpy(), atol=1e-6)
    expected = references.classifier(model, preprocessor, SENTENCES)
    # See the module docstring: dynamic activation rounding may differ from eager Keras.
    atol = 1e-4 if weight_only else 0.05 * np.abs(expected["logits"]).max()
    np.testing.assert_allclose(served["logits"].numpy(), expected["logits"], atol=atol, rtol=0)
    if weight_only:
        np.testing.assert_array_equal(served["label_ids"].numpy(), expected["label_ids"])


@pytest.mark.slow
def test_quantized_minilm_classifier_in_fresh_process(tmp_path, minilm_dir, shared_data):
    pre = keras_llm.tokenizers.BertPreprocessor.from_pretrained(minilm_dir, sequence_length=64)
    sentences = read_sst2(shared_data, "dev", limit=16)[0] + SENTENCES
    ids = {k: np.asarray(v, np.int32) for k, v in pre(sentences).items()}

    def classifier():
        keras.utils.set_random_seed(0)
        return keras_llm.models.BertClassifier.from_pretrained(
            minilm_dir, num_classes=2, label_names=["negative", "positive"])

    model = classifier()
    float_path = export_saved_model(model, tmp_path / "float", pre, signatures=("token_ids",))
    _quantize(model)
    dynamic_path = export_saved_model(model, tmp_path / "int8", pre)
    dynamic_expected = references.classifier(model, pre, sentences)
    weight_only = classifier()
    _quantize(weight_only, weight_only=True)
    weight_only_path = export_saved_model(weight_only, tmp_path / "int8_weights", pre,
                                          signatures=("token_ids",))
    weight_only_expected = references.classifier(weight_only, pre, sentences)
    in_process = tf.saved_model.load(dynamic_path).signatures["token_ids"](**_as_tensors(ids))

    calls = {"text": (dynamic_path, "serving_default", {"text": np.array(sentences, object)}),
             "ids": (dynamic_path, "token_ids", ids),
             "weight_only": (weight_only_path, "serving_default", ids)}
    calls_file, outputs_file = tmp_path / "calls.pkl", tmp_path / "outputs.pkl"
    calls_file.write_bytes(pickle.dumps(calls))
    result = subprocess.run([sys.executable, str(RUNNER), str(calls_file), str(outputs_file)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = pickle.loads(outputs_file.read_bytes())
    assert outputs.pop("__modules__") == []

    # Weight-only int8: the fresh process equals the Keras quantized model.
    np.testing.assert_allclose(outputs["weight_only"]["logits"], weight_only_expected["logits"],
                               atol=1e-4, rtol=0)
    np.testing.assert_array_equal(outputs["weight_only"]["label_ids"],
                                  weight_only_expected["label_ids"])
    # Default int8: the fresh process reproduces the SavedModel in this process exactly...
    for key in ("text", "ids"):
        np.testing.assert_allclose(outputs[key]["logits"], in_process["logits"].numpy(),
                                   atol=1e-6, rtol=0, err_msg=key)
    # ... and the Keras model up to the activation rounding (random head: logits ~0.03).
    logits = dynamic_expected["logits"]
    np.testing.assert_allclose(outputs["text"]["logits"], logits,
                               atol=0.25 * np.abs(logits).max(), rtol=0)
    assert set(outputs["text"]["label_names"].tolist()) <= {b"negative", b"positive"}

    # int8 kernels (1 byte) instead of float32 ones (4 bytes): under 40% of the float export.
    float_size, int8_size = _size(float_path), _size(dynamic_path)
    print(f"SavedModel size: float {float_size / 1e6:.1f} MB, int8 {int8_size / 1e6:.1f} MB")
    assert int8_size < 0.4 * float_size
    assert _size(weight_only_path) < 0.4 * float_size
