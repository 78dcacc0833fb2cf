"""examples/pretrain_bert.py end to end on a slice of tiny Shakespeare: the MLM loss falls,
the run resumes, the encoder exports."""

import json
import math

import pytest

from tests.examples.test_examples import run_example

SMALL = ["--preset=bert_tiny", "--vocab_size=800", "--max_seq_length=64", "--batch_size=16",
         "--eval_batch_size=64", "--steps_per_checkpoint=40", "--eval_every=40",
         "--learning_rate=2e-3", "--max_predictions_per_seq=10", "--whole_word_masking"]


@pytest.mark.slow
def test_pretrain_then_resume(tmp_path, shared_data):
    lines = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines.splitlines()[:3000]) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    common = [f"--text_file={corpus}", f"--output_dir={out}", *SMALL]

    run_example("pretrain_bert.py", *common, "--num_train_steps=80",
                f"--export_dir={tmp_path / 'served'}")
    first = json.loads((out / "results.json").read_text())
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(vocab) <= 800
    assert first["resumed_from_step"] == 0 and first["num_eval_pairs"] > 20
    # From chance (about ln |V|) to well below it, and below the unigram baseline's reach.
    assert first["initial"]["mlm_loss"] > 0.9 * math.log(len(vocab))
    assert first["mlm_loss"] < first["initial"]["mlm_loss"] - 0.7
    history = [entry["mlm_loss"] for entry in first["eval_history"]]
    assert [entry["step"] for entry in first["eval_history"]] == [40, 80]
    assert history[-1] <= history[0] + 0.05
    assert 0 <= first["nsp_accuracy"] <= 1 and first["mlm_accuracy"] > 0.03
    assert abs(first["random_next_share"] - 0.5) < 0.05
    assert (out / "pretrainer.keras").is_file()
    assert list((out / "logs").rglob("events.out.tfevents*"))
    assert (tmp_path / "served" / "1" / "saved_model.pb").is_file()

    # Asked to go further, the same run picks up at step 80 with the same vocabulary.
    run_example("pretrain_bert.py", *common, "--num_train_steps=120")
    second = json.loads((out / "results.json").read_text())
    assert second["resumed_from_step"] == 80 and second["train_steps"] == 120
    assert second["initial"] == first["initial"]
    assert (out / "vocab.txt").read_text(encoding="utf-8").splitlines() == vocab
