"""examples/train_t5.py end to end on small data: pairs (with resume) and span corruption."""

import json

import pytest

from tests.examples.test_examples import run_example

TINY = ["--num_layers=1", "--num_heads=2", "--hidden_size=32", "--intermediate_size=64",
        "--vocab_size=300", "--batch_size=8", "--max_input_length=24", "--max_target_length=4",
        "--steps_per_checkpoint=2", "--eval_examples=16"]


@pytest.mark.slow
def test_pairs_train_evaluate_and_resume(tmp_path):
    words = ["red", "green", "blue", "black", "white", "pink"]
    rows = [f"copy: {a} {b}\t{a}" for a in words for b in words]
    (tmp_path / "pairs.tsv").write_text("input\ttarget\n" + "\n".join(rows * 3) + "\n")
    out = tmp_path / "run"
    common = ["--task=pairs", f"--train_file={tmp_path / 'pairs.tsv'}", f"--output_dir={out}",
              *TINY]
    run_example("train_t5.py", *common, "--train_steps=4", f"--export_dir={tmp_path / 'served'}",
                "--export_max_new_tokens=4")
    assert (tmp_path / "served" / "1" / "saved_model.pb").is_file()
    results = json.loads((out / "results.json").read_text())
    assert {"exact_match", "rouge_l", "bleu", "validation_loss"} <= set(results)
    assert results["resumed_from_step"] == 0 and len(results["samples"]) == 5
    run_example("train_t5.py", *common, "--train_steps=6")
    assert json.loads((out / "results.json").read_text())["resumed_from_step"] == 4


@pytest.mark.slow
def test_span_corruption_pretraining(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i} of a small corpus about cats and dogs.\n"
                            for i in range(300)))
    out = tmp_path / "pretrain"
    run_example("train_t5.py", "--task=span_corruption", f"--train_file={text}",
                f"--output_dir={out}", *TINY, "--train_steps=4", "--max_target_length=12")
    results = json.loads((out / "results.json").read_text())
    assert results["validation_loss"] > 0 and "exact_match" not in results
