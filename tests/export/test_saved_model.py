"""TF Serving layout, versions, warmup file, errors before writing, and the CLI."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from tensorflow_serving.apis import prediction_log_pb2

import keras_llm
from keras_llm.export import WARMUP_FILE, ExportError, export_saved_model, next_version
from keras_llm.export import __main__ as cli
from tests.export.conftest import VOCAB, tiny_bert


def test_layout_and_warmup(classifier_export):
    path = classifier_export.path
    assert os.path.basename(path) == "1"
    assert sorted(os.listdir(os.path.dirname(path))) == ["1"]  # no staging folder left
    for name in ("saved_model.pb", "variables", "assets.extra"):
        assert os.path.exists(os.path.join(path, name)), name
    assert os.listdir(os.path.join(path, "variables"))
    metadata = json.load(open(os.path.join(path, "assets.extra", "keras_llm_export.json")))
    assert metadata["model_class"] == "BertClassifier"
    assert set(metadata["signatures"]) == {"serving_default", "token_ids"}

    records = list(tf.data.TFRecordDataset(os.path.join(path, "assets.extra", WARMUP_FILE)))
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]
    assert len(logs) == 3  # one per example, then both together
    signature = classifier_export.signature()
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        outputs = signature(**{k: tf.constant(v) for k, v in inputs.items()})
        assert outputs["logits"].shape[0] == len(inputs["text"])
    assert tf.make_ndarray(logs[2].predict_log.request.inputs["text"]).tolist() == [
        b"a fine film", b"dull"]


def test_versions_are_never_overwritten(tmp_path, classifier_export):
    model, pre = classifier_export.model, classifier_export.preprocessor
    (tmp_path / "3").mkdir()
    (tmp_path / "notes").mkdir()
    assert next_version(tmp_path) == 4
    with pytest.raises(ExportError, match="already exists"):
        export_saved_model(model, tmp_path, pre, version=3, signatures=("token_ids",))
    assert os.listdir(tmp_path / "3") == []
    path = export_saved_model(model, tmp_path, pre, signatures=("token_ids",))
    assert path == str(tmp_path / "4")
    # Only the token-id signature was asked for: it is also the default.
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "token_ids"}
    assert sorted(loaded.signatures["serving_default"].structured_input_signature[1]) == [
        "padding_mask", "segment_ids", "token_ids"]


def test_unbuilt_model_is_refused_before_writing(tmp_path, preprocessor):
    model = keras_llm.models.BertClassifier(tiny_bert(preprocessor.tokenizer.vocabulary_size()),
                                            num_classes=2)
    with pytest.raises(ExportError, match="never built"):
        export_saved_model(model, tmp_path / "out", preprocessor)
    assert not (tmp_path / "out").exists()


def test_vocabulary_larger_than_embedding_is_refused(tmp_path, preprocessor):
    bert = keras_llm.models.Bert(vocab_size=50, num_layers=1, num_heads=1, hidden_size=8,
                                 intermediate_size=8, max_sequence_length=64)
    model = keras_llm.models.BertClassifier(bert, num_classes=2)
    model({"token_ids": np.array([[2, 3]])})
    with pytest.raises(ExportError, match="158 ids but the model's token embedding has 50"):
        export_saved_model(model, tmp_path / "out", preprocessor)
    assert not (tmp_path / "out").exists()


def test_other_refusals(tmp_path, classifier_export):
    model, pre = classifier_export.model, classifier_export.preprocessor
    with pytest.raises(ExportError, match="signatures must be"):
        export_saved_model(model, tmp_path, pre, signatures=("bogus",))
    with pytest.raises(ExportError, match="needs a preprocessor"):
        export_saved_model(model, tmp_path, None, signatures=("text",))
    with pytest.raises(ExportError, match="Cannot export a Sequential"):
        export_saved_model(keras.Sequential([keras.layers.Dense(1)]), tmp_path)
    long = keras_llm.tokenizers.BertPreprocessor(pre.tokenizer, sequence_length=65)
    with pytest.raises(ExportError, match="64 positions"):
        export_saved_model(model, tmp_path, long)
    with pytest.raises(ExportError, match="lacks inputs"):
        export_saved_model(model, tmp_path, pre, pair=True, warmup_examples=[{"text": "a"}])
    assert os.listdir(tmp_path) == []


def test_without_a_preprocessor_the_text_signature_is_dropped_with_a_warning(
        tmp_path, classifier_export, caplog):
    with caplog.at_level("WARNING", logger="keras_llm.export.saved_model"):
        path = export_saved_model(classifier_export.model, tmp_path)
    assert "exporting the token_ids signature(s) only" in caplog.text
    for signature in tf.saved_model.load(path).signatures.values():
        assert "text" not in signature.structured_input_signature[1]


def test_gpt_export_limits(gpt_export):
    lm = gpt_export.model
    with pytest.raises(ValueError, match="must fit"):
        export_saved_model(lm, "/nonexistent/never", max_new_tokens=200, max_prompt_length=100)
    signature = gpt_export.signature()
    with pytest.raises(tf.errors.InvalidArgumentError, match="export-time maximum of 8"):
        signature(prompt=tf.constant(["Hi"]), max_new_tokens=tf.constant(9))
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_new_tokens must be >= 1"):
        signature(prompt=tf.constant(["Hi"]), max_new_tokens=tf.constant(0))
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty prompt"):
        signature(prompt=tf.constant(["Hi", ""]), max_new_tokens=tf.constant(2))


def test_cli_exports_a_saved_classifier(tmp_path, classifier_export, capsys):
    model_path = tmp_path / "classifier.keras"
    classifier_export.model.save(model_path)
    export_dir = tmp_path / "serving"
    argv = ["export", f"--model={model_path}", f"--export_dir={export_dir}",
            f"--vocabulary={VOCAB}", "--sequence_length=32", "--warmup=a fine film"]
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    try:
        assert cli.main([]) == 0
        assert capsys.readouterr().out.strip() == str(export_dir / "1")
        flags.FLAGS.unparse_flags()
        flags.FLAGS(argv + ["--version=1"])
        assert cli.main([]) == 1
        assert "already exists" in capsys.readouterr().err
    finally:
        flags.FLAGS.unparse_flags()
    loaded = tf.saved_model.load(str(export_dir / "1"))
    out = loaded.signatures["serving_default"](text=tf.constant(["a fine film"]))
    expected = classifier_export.signature()(text=tf.constant(["a fine film"]))
    np.testing.assert_allclose(out["logits"], expected["logits"], atol=1e-6)
    assert os.path.exists(export_dir / "1" / "assets.extra" / WARMUP_FILE)


def _run_cli(argv: list[str]) -> int:
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["export", *argv])
    try:
        return cli.main([])
    finally:
        flags.FLAGS.unparse_flags()


def test_cli_refuses_a_text_signature_without_a_tokenizer(tmp_path, classifier_export, capsys):
    model_path = tmp_path / "classifier.keras"
    classifier_export.model.save(model_path)
    export_dir = tmp_path / "serving"
    assert _run_cli([f"--model={model_path}", f"--export_dir={export_dir}"]) == 1
    assert "Pass --vocabulary=vocab.txt or --preprocessor_dir" in capsys.readouterr().err
    assert not export_dir.exists()
    assert _run_cli([f"--model={model_path}", f"--export_dir={export_dir}",
                     "--signatures=token_ids"]) == 0
    assert capsys.readouterr().out.strip() == str(export_dir / "1")
