"""examples/run_glue.py end to end: a crafted tiny GLUE folder with a bert_tiny model, and
200-step fine-tunes of the real MiniLM checkpoint on the real SST-2 and STS-B."""

from __future__ import annotations

import json

import pytest

from tests.examples.test_examples import run_example

WORDS = ["the", "cat", "dog", "sat", "ran", "on", "mat", "a", "is", "not", "big", "small"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "."]
MNLI_LABELS = ("entailment", "neutral", "contradiction")
MNLI_HEADER = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse",
               "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
               "sentence2")
# XLA makes a MiniLM train step about 2x slower on these CPUs; the model file is not checked.
FAST = ["--jit_compile=false", "--save_model=false"]


def write_tiny_mnli(root, train_rows: int = 48, eval_rows: int = 10, test_rows: int = 7):
    """An MNLI folder in the GLUE layout: 12-column train, 16-column dev, 10-column test."""
    folder = root / "MNLI"
    folder.mkdir(parents=True)

    def pair(i):
        a = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(5)) + " ."
        b = " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(3))
        return a, b

    def row(i, columns, label=None):
        a, b = pair(i)
        values = [str(i), str(1000 + i), f"{1000 + i}e", "fiction", "( x )", "( y )", "(ROOT x)",
                  "(ROOT y)", a, b]
        if label is not None:
            values += [label] * (columns - len(values))
        return "\t".join(values)

    train_header = [*MNLI_HEADER, "label1", "gold_label"]
    dev_header = [*MNLI_HEADER, *(f"label{k}" for k in range(1, 6)), "gold_label"]
    (folder / "train.tsv").write_text("\t".join(train_header) + "\n" + "".join(
        row(i, 12, MNLI_LABELS[i % 3]) + "\n" for i in range(train_rows)))
    for split in ("dev_matched", "dev_mismatched"):
        (folder / f"{split}.tsv").write_text("\t".join(dev_header) + "\n" + "".join(
            row(i, 16, MNLI_LABELS[i % 3]) + "\n" for i in range(eval_rows)))
    for split in ("test_matched", "test_mismatched"):
        (folder / f"{split}.tsv").write_text("\t".join(MNLI_HEADER) + "\n" + "".join(
            row(i, 10) + "\n" for i in range(test_rows)))


@pytest.mark.slow  # A subprocess: about 40 s of CPU for TF start-up, 4 steps, predict, export.
def test_tiny_mnli_folder_with_bert_tiny(tmp_path):
    write_tiny_mnli(tmp_path / "glue")
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    out = tmp_path / "run"
    run_example(
        "run_glue.py", "--task=mnli", f"--data_dir={tmp_path / 'glue'}",
        "--init_checkpoint=bert_tiny", f"--vocab_file={tmp_path / 'vocab.txt'}",
        f"--output_dir={out}", "--max_seq_length=24", "--batch_size=8", "--eval_batch_size=4",
        "--num_train_steps=4", "--steps_per_checkpoint=2", "--learning_rate=1e-3",
        f"--export_dir={tmp_path / 'served'}", "--jit_compile=false",
    )
    results = json.loads((out / "results.json").read_text())
    assert {"accuracy", "accuracy_matched", "accuracy_mismatched"} <= set(results)
    assert results["accuracy"] == results["accuracy_matched"]
    assert results["num_eval_examples"] == {"dev_matched": 10, "dev_mismatched": 10}
    assert results["train_steps"] == 4 and results["num_train_examples"] == 48
    for name in ("MNLI-m.tsv", "MNLI-mm.tsv"):
        lines = (out / "predictions" / name).read_text().splitlines()
        assert lines[0] == "index\tprediction" and len(lines) == 8
        assert [line.split("\t")[0] for line in lines[1:]] == [str(i) for i in range(7)]
        assert {line.split("\t")[1] for line in lines[1:]} <= set(MNLI_LABELS)
    assert (out / "model.keras").is_file()
    assert (tmp_path / "served" / "1" / "saved_model.pb").is_file()


def test_bad_data_fails_with_the_file_and_line(tmp_path):
    folder = tmp_path / "SST-2"
    folder.mkdir()
    (folder / "train.tsv").write_text("sentence\tlabel\nthe cat\t1\nthe dog\tpositive\n")
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    with pytest.raises(AssertionError, match=r"train\.tsv:3: label 'positive'"):
        run_example("run_glue.py", "--task=sst2", f"--data_dir={tmp_path}",
                    "--init_checkpoint=bert_tiny", f"--vocab_file={tmp_path / 'vocab.txt'}",
                    f"--output_dir={tmp_path / 'run'}")


def run_minilm(shared_data, minilm_dir, tmp_path, task: str, *extra: str) -> dict:
    out = tmp_path / task
    run_example(
        "run_glue.py", f"--task={task}", f"--data_dir={shared_data / 'glue'}",
        f"--init_checkpoint={minilm_dir}", f"--output_dir={out}", "--batch_size=32",
        "--num_train_steps=200", "--steps_per_checkpoint=100", "--learning_rate=5e-5",
        "--max_train_examples=6400", *FAST, *extra,
    )
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_minilm_sst2_200_steps(shared_data, minilm_dir, tmp_path):
    results = run_minilm(shared_data, minilm_dir, tmp_path, "sst2", "--max_seq_length=32")
    assert results["accuracy"] > 0.6, results
    assert results["num_eval_examples"] == {"dev": 872} and results["train_steps"] == 200
    assert {"eval_history", "train_seconds_this_run", "config"} <= set(results)


@pytest.mark.slow
def test_minilm_stsb_200_steps(shared_data, minilm_dir, tmp_path):
    results = run_minilm(shared_data, minilm_dir, tmp_path, "stsb", "--max_seq_length=32")
    assert results["pearson"] > 0.3, results
    assert -1 <= results["spearman"] <= 1 and "accuracy" not in results
    assert results["num_eval_examples"] == {"dev": 1500}
