"""examples/train_contrastive.py end to end on a small random BERT: STS-B before and after."""

import json

import pytest

from tests.examples.test_examples import run_example

SMALL = ["--init_checkpoint=bert_tiny", "--batch_size=16", "--max_seq_length=16",
         "--eval_examples=64", "--eval_batch_size=64", "--max_train_examples=256"]


@pytest.mark.slow
def test_unsupervised_then_supervised_from_the_saved_model(tmp_path, shared_data, minilm_dir):
    stsb = shared_data / "glue" / "STS-B"
    first = tmp_path / "unsupervised"
    run_example("train_contrastive.py", *SMALL, f"--vocab_file={minilm_dir}/vocab.txt",
                f"--train_file={stsb / 'train.tsv'}", f"--eval_file={stsb / 'dev.tsv'}",
                "--pooling=mean", "--num_train_steps=4", "--steps_per_checkpoint=2",
                f"--output_dir={first}")
    results = json.loads((first / "results.json").read_text())
    assert results["mode"] == "unsupervised" and results["eval_pairs"] == 64
    assert results["train_examples"] == 256 and results["resumed_from_step"] == 0
    for key in ("spearman_before", "spearman_after", "pearson_before", "pearson_after"):
        assert -1.0 <= results[key] <= 1.0
    assert len(results["train_loss"]) == 2 and all(v > 0 for v in results["train_loss"])
    assert (first / "model.keras").is_file() and (first / "vocab.txt").is_file()

    # Supervised pairs (STS-B train pairs scored >= 4), starting from the saved model and the
    # vocabulary written beside it.
    second = tmp_path / "supervised"
    run_example("train_contrastive.py", *SMALL, f"--init_checkpoint={first / 'model.keras'}",
                "--mode=supervised", f"--train_file={stsb / 'train.tsv'}",
                f"--eval_file={stsb / 'dev.tsv'}", "--num_train_steps=2",
                "--steps_per_checkpoint=2", f"--output_dir={second}")
    supervised = json.loads((second / "results.json").read_text())
    assert supervised["mode"] == "supervised" and supervised["pooling"] == "mean"
    # It starts where the first run ended.
    assert supervised["spearman_before"] == pytest.approx(results["spearman_after"], abs=1e-6)
