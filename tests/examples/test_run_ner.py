"""examples/run_ner.py end to end: a short MiniLM fine-tune on real CoNLL-2003 data."""

import json

import pytest

from keras_llm.data.conll import read_conll
from tests.examples.test_examples import run_example


@pytest.mark.slow
def test_short_minilm_run_learns_entities(shared_data, minilm_dir, tmp_path):
    # 60 steps of 16 sentences (the first 960 of eng.train), scored on the first 200
    # sentences of eng.testa (dev) and eng.testb (test). Measured: dev entity F1 0.54,
    # test 0.63 (an all-"O" tagger scores 0); about 1 minute of training on 2 cores.
    out = tmp_path / "run"
    output = run_example(
        "run_ner.py", f"--data_dir={shared_data / 'conll2003'}", f"--init_checkpoint={minilm_dir}",
        f"--output_dir={out}", f"--export_dir={tmp_path / 'served'}",
        "--max_train_examples=960", "--max_eval_examples=200", "--batch_size=16",
        "--learning_rate=2e-4", "--num_train_epochs=1", "--steps_per_checkpoint=60",
        "--pad_to_multiple_of=16",
    )
    results = json.loads((out / "results.json").read_text())
    assert results["train_steps"] == 60 and results["resumed_from_step"] == 0
    assert results["f1"] > 0.40, results["f1"]
    assert results["test_f1"] > 0.40, results["test_f1"]
    for prefix in ("", "test_"):
        assert {"precision", "recall", "f1", "accuracy"} <= {
            k.removeprefix(prefix) for k in results if k.startswith(prefix)}
        assert set(results[f"{prefix}per_type"]) == {"LOC", "MISC", "ORG", "PER"}
        assert results[f"{prefix}per_type"]["PER"]["f1"] > 0.5
    assert results["label_names"][0] == "O" and len(results["label_names"]) == 9
    assert results["num_eval_examples"] == {"dev": 200, "test": 200}
    assert results["dev_words_cut"] == 0 and results["test_words_cut"] == 0
    assert results["eval_history"][-1]["f1"] == results["f1"]
    assert "test f1" in output or "test_f1" in output

    # conlleval's input: `word gold predicted`, the gold tags as read from eng.testb.
    words, tags = read_conll(shared_data / "conll2003" / "eng.testb")
    sentences = (out / "predictions" / "eng.testb.txt").read_text().strip().split("\n\n")
    assert len(sentences) == 200
    rows = [line.split() for line in sentences[0].splitlines()]
    assert [r[0] for r in rows] == words[0] and [r[1] for r in rows] == tags[0]
    assert (out / "model.keras").is_file()
    assert (tmp_path / "served" / "1" / "saved_model.pb").is_file()
