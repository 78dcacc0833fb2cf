"""Every signature of every exported model, run in a fresh process that imports only TensorFlow
and tensorflow-text, equals the Keras model (1e-5); `saved_model_cli` lists the signatures."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.export import references
from tests.export.conftest import SENTENCES

RUNNER = Path(__file__).with_name("fresh_process_runner.py")
SAVED_MODEL_CLI = Path(sys.executable).with_name("saved_model_cli")
PROMPTS = ["The quick brown fox", "Hello", "In a hole in the ground there lived a hobbit, " * 3]
QUESTIONS = ["what is the film?", "who is great?"]
CONTEXTS = ["a gripping, beautiful film. the acting is great.", "the story is boring."]


def _ids(preprocessor, texts):
    inputs = preprocessor(texts)
    return {k: np.asarray(v, np.int32) for k, v in inputs.items()}


def _assert_close(actual: dict, expected: dict, context: str):
    for name, value in expected.items():
        assert name in actual, f"{context}: output {name!r} missing from {sorted(actual)}"
        got = actual[name]
        if np.asarray(value).dtype == object:
            assert got.tolist() == np.asarray(value).tolist(), f"{context}: {name}"
        elif np.issubdtype(np.asarray(value).dtype, np.integer):
            np.testing.assert_array_equal(got, value, err_msg=f"{context}: {name}")
        else:
            np.testing.assert_allclose(got, value, atol=1e-5, rtol=0, err_msg=f"{context}: {name}")


@pytest.mark.slow
def test_fresh_process_matches_keras(tmp_path, classifier_export, pair_regression_export,
                                     qa_export, tagger_export, embedding_export, gpt_export,
                                     gpt_sampling_export):
    pre = classifier_export.preprocessor
    calls, expected = {}, {}

    def add(key, export, name, inputs, reference):
        calls[key] = (export.path, name, inputs)
        expected[key] = reference

    texts = np.array(SENTENCES, dtype=object)
    clf = classifier_export
    add("classifier/text", clf, "serving_default", {"text": texts},
        references.classifier(clf.model, pre, SENTENCES))
    add("classifier/ids", clf, "token_ids", _ids(pre, SENTENCES),
        references.classifier(clf.model, pre, SENTENCES))
    reg = pair_regression_export
    add("regression/text", reg, "serving_default",
        {"text": texts, "text_pair": texts[::-1].copy()},
        references.classifier(reg.model, pre, SENTENCES, SENTENCES[::-1]))
    add("regression/ids", reg, "token_ids", _ids(pre, (SENTENCES, SENTENCES[::-1])),
        references.classifier(reg.model, pre, SENTENCES, SENTENCES[::-1]))
    add("qa/text", qa_export, "serving_default",
        {"question": np.array(QUESTIONS, object), "context": np.array(CONTEXTS, object)},
        references.question_answerer(qa_export.model, pre, QUESTIONS, CONTEXTS))
    add("tagger/text", tagger_export, "serving_default", {"text": texts},
        references.tagger(tagger_export.model, pre, SENTENCES))
    emb = embedding_export
    add("embedding/text", emb, "serving_default", {"text": texts},
        references.embedding(emb.model, pre, SENTENCES))
    add("embedding/ids", emb, "token_ids", _ids(pre, SENTENCES),
        references.embedding(emb.model, pre, SENTENCES))

    lm = gpt_export.model
    greedy = references.generation(lm, PROMPTS, 6, 24)
    add("gpt/text", gpt_export, "serving_default",
        {"prompt": np.array(PROMPTS, object), "max_new_tokens": np.int32(6)}, greedy)
    rows = [r[-24:] for r in lm.tokenizer(PROMPTS).to_list()]
    dense = np.full((len(rows), max(map(len, rows))), 50256, np.int32)
    for i, row in enumerate(rows):
        dense[i, :len(row)] = row
    add("gpt/ids", gpt_export, "token_ids",
        {"token_ids": dense, "prompt_lengths": np.array(list(map(len, rows)), np.int32),
         "max_new_tokens": np.int32(6)},
        {"generated_token_ids": greedy["generated_token_ids"]})
    sampled = references.generation(gpt_sampling_export.model, PROMPTS, 5, 24,
                                    strategy="top_k", top_k=5, seed=3)
    add("gpt_sampling/text", gpt_sampling_export, "serving_default",
        {"prompt": np.array(PROMPTS, object), "max_new_tokens": np.int32(5),
         "seed": np.int32(3)}, sampled)

    calls_file, outputs_file = tmp_path / "calls.pkl", tmp_path / "outputs.pkl"
    calls_file.write_bytes(pickle.dumps(calls))
    result = subprocess.run([sys.executable, str(RUNNER), str(calls_file), str(outputs_file)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = pickle.loads(outputs_file.read_bytes())
    assert outputs.pop("__modules__") == []
    for key, reference in expected.items():
        _assert_close(outputs[key], reference, key)


@pytest.mark.slow
def test_saved_model_cli_lists_documented_signatures(classifier_export, gpt_export):
    shown = subprocess.run([str(SAVED_MODEL_CLI), "show", "--all", "--dir",
                            classifier_export.path], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = shown.stdout
    blocks = dict(re.findall(r"signature_def\['(\w+)'\]:\n(.*?)(?=\nsignature_def|\Z)",
                             text, flags=re.S))
    assert {"serving_default", "token_ids"} <= set(blocks)
    default = blocks["serving_default"]
    assert "Method name is: tensorflow/serving/predict" in default
    assert re.search(r"inputs\['text'\] tensor_info:\s+dtype: DT_STRING\s+shape: \(-1\)",
                     default)
    for name, dtype in [("logits", "DT_FLOAT"), ("probabilities", "DT_FLOAT"),
                        ("label_ids", "DT_INT32"), ("label_names", "DT_STRING")]:
        assert re.search(rf"outputs\['{name}'\] tensor_info:\s+dtype: {dtype}", default), name
    for name in ("token_ids", "segment_ids", "padding_mask"):
        assert re.search(rf"inputs\['{name}'\] tensor_info:\s+dtype: DT_INT32\s+"
                         r"shape: \(-1, -1\)", blocks["token_ids"]), name
    assert "tensorflow/serving/predict" in blocks["token_ids"]

    shown = subprocess.run([str(SAVED_MODEL_CLI), "show", "--dir", gpt_export.path,
                            "--tag_set", "serve", "--signature_def", "serving_default"],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert re.search(r"inputs\['prompt'\] tensor_info:\s+dtype: DT_STRING", shown.stdout)
    assert re.search(r"inputs\['max_new_tokens'\] tensor_info:\s+dtype: DT_INT32\s+shape: \(\)",
                     shown.stdout)
    for name in ("generated_text", "generated_token_ids", "generated_lengths"):
        assert f"outputs['{name}']" in shown.stdout
    assert "tensorflow/serving/predict" in shown.stdout
