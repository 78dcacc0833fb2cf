"""Wrong flags fail at once with a message that names the problem and the flag to pass.

Each test starts a script that stops before any model loads (a few seconds, mostly the
TensorFlow import), so none is marked slow.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.examples.test_examples import ROOT

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "."]


def run_failing(script: str, *args: str) -> str:
    """Runs examples/<script>, which must fail; returns its stderr."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode != 0, result.stdout[-2000:]
    return result.stderr


@pytest.fixture
def sst2_root(tmp_path):
    """A GLUE root that holds a two-row SST-2 only."""
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("sentence\tlabel\nthe cat sat .\t1\nthe cat\t0\n")
    return tmp_path / "glue"


def test_run_glue_reports_a_wrong_checkpoint_not_a_missing_vocabulary(tmp_path, sst2_root):
    # An unknown preset name (bert_huge) takes the same path: tests/training/test_finetuning.py.
    stderr = run_failing("run_glue.py", "--task=sst2", f"--data_dir={sst2_root}",
                         "--init_checkpoint=/nonexistent", f"--output_dir={tmp_path / 'run'}")
    assert ("--init_checkpoint '/nonexistent' is neither an existing file or folder nor a "
            "preset (bert_base, ") in stderr
    assert "No WordPiece vocabulary" not in stderr and "vocab.txt" not in stderr


def test_run_glue_names_steps_per_checkpoint_for_eval_every(tmp_path):
    stderr = run_failing("run_glue.py", "--task=sst2", "--init_checkpoint=bert_tiny",
                         "--eval_every=2", "--steps_per_checkpoint=500",
                         f"--data_dir={tmp_path / 'nowhere'}", f"--output_dir={tmp_path / 'run'}")
    # Checked before the data: the missing --data_dir is not reached.
    assert ("eval_every=2 must be a positive multiple of steps_per_checkpoint=500 (evaluation "
            "runs where a checkpoint is written, so that resuming keeps its history): pass "
            "--steps_per_checkpoint=2") in stderr
    assert "nowhere" not in stderr


def test_run_glue_shows_the_paths_it_tried_for_a_task_the_root_lacks(tmp_path, sst2_root):
    stderr = run_failing("run_glue.py", "--task=mnli", f"--data_dir={sst2_root}",
                         "--init_checkpoint=bert_tiny", f"--output_dir={tmp_path / 'run'}")
    assert (f"GLUE MNLI train file not found: looked for {sst2_root / 'MNLI' / 'train.tsv'} and "
            f"{sst2_root / 'train.tsv'}. {sst2_root} holds the GLUE folders SST-2, not MNLI."
            ) in stderr


@pytest.mark.parametrize("script, steps_flag, default_interval", [
    ("train_gpt.py", "--train_steps", 100),
    ("train_contrastive.py", "--num_train_steps", 50),
    ("train_t5.py", "--train_steps", 250),
])
def test_step_flags_are_checked_before_anything_loads(tmp_path, script, steps_flag,
                                                      default_interval):
    out = tmp_path / "run"
    stderr = run_failing(script, f"{steps_flag}=7", f"--output_dir={out}")
    assert (f"{steps_flag}=7 must be a multiple of --steps_per_checkpoint={default_interval} (a "
            f"run stops on a checkpoint): pass --steps_per_checkpoint=7 or "
            f"{steps_flag}={default_interval}.") in stderr
    assert not out.exists()  # Nothing ran: no output folder, no checkpoints.


def test_train_t5_takes_the_glue_root_like_run_glue(tmp_path, sst2_root):
    (sst2_root / "SST-2" / "dev.tsv").unlink()
    stderr = run_failing("train_t5.py", f"--data_dir={sst2_root}", "--train_steps=2",
                         "--steps_per_checkpoint=2", f"--output_dir={tmp_path / 'run'}")
    # It looked inside SST-2/ (train.tsv was found there), and says which folder to pass.
    assert (f"--data_dir={sst2_root} holds no SST-2 dev.tsv (looked for "
            f"{sst2_root / 'SST-2' / 'dev.tsv'}). Pass the GLUE root that holds SST-2/ or the "
            "SST-2 folder itself") in stderr


def test_pretrain_bert_help_has_no_fine_tuning_task_flags():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "pretrain_bert.py"),
                             "--help"], capture_output=True, text=True, env=env, timeout=300)
    assert "--text_file:" in result.stdout, result.stderr[-2000:]  # absl's --help exits 1.
    assert "--num_train_steps:" in result.stdout
    for flag in ("--task:", "--data_dir:", "--tfds_name:", "Task to fine-tune on"):
        assert flag not in result.stdout
