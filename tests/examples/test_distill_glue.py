"""`examples/distill_glue.py` end to end on a tiny GLUE folder, and its bad-flag errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keras_llm.data import SAMPLE_DIR

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory) -> Path:
    """The shipped sentiment sample laid out as GLUE's SST-2 folder."""
    root = tmp_path_factory.mktemp("glue")
    (root / "SST-2").mkdir()
    lines = (SAMPLE_DIR / "sentiment.tsv").read_text(encoding="utf-8").splitlines()
    (root / "SST-2" / "train.tsv").write_text("\n".join(lines[:257]) + "\n", encoding="utf-8")
    (root / "SST-2" / "dev.tsv").write_text("\n".join([lines[0], *lines[257:]]) + "\n",
                                            encoding="utf-8")
    return root


def distill(glue_dir: Path, output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, str(REPO / "examples" / "distill_glue.py"), "--task=sst2",
        f"--data_dir={glue_dir}", "--teacher=bert_tiny", f"--vocab_file={SAMPLE_DIR / 'vocab.txt'}",
        "--teacher_steps=40", "--num_train_steps=40", "--steps_per_checkpoint=20",
        "--max_seq_length=32", "--learning_rate=1e-3", "--latency_repeats=2",
        f"--output_dir={output_dir}", *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_teacher_students_and_int8_in_one_table(glue_dir, tmp_path):
    done = distill(glue_dir, tmp_path / "run", "--student=every_other_layer",
                   "--intermediate_loss", "--quantize=int8", "--teacher_learning_rate=2e-3")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = {row["model"]: row for row in results["table"]}
    assert list(rows) == ["teacher", "student_distilled", "student_plain",
                          "student_distilled_int8"]
    # bert_tiny has 2 layers: every other one leaves a 1-layer student.
    assert rows["student_distilled"]["parameters"] < rows["teacher"]["parameters"]
    assert rows["student_distilled"]["parameters"] == rows["student_plain"]["parameters"]
    assert rows["student_distilled_int8"]["saved_model_mb"] < rows["student_distilled"][
        "saved_model_mb"]
    for row in rows.values():
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["latency_ms_batch1"] > 0 and row["latency_ms_batch32"] > 0
        assert Path(row["saved_model"], "saved_model.pb").is_file()
    assert "accuracy" in done.stdout and "student_distilled_int8" in done.stdout


@pytest.mark.parametrize("flag, message", [
    ("--temperature=0", "--temperature must be > 0"),
    ("--alpha=1.5", "--alpha must be in [0, 1]"),
    ("--student=bert_galactic", "neither a Bert preset"),
    ("--teacher_learning_rate=-1e-4", "--teacher_learning_rate must be > 0"),
])
def test_bad_settings_fail_before_training(glue_dir, tmp_path, flag, message):
    done = distill(glue_dir, tmp_path / "bad", flag)
    assert done.returncode != 0
    assert message in done.stderr
    assert not (tmp_path / "bad").exists()
