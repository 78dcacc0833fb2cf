"""The example scripts, run end to end as a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_example(script: str, *args: str) -> str:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_quickstart_trains_evaluates_and_saves(tmp_path):
    output = run_example("quickstart.py", f"--output_dir={tmp_path}", "--epochs=4")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["train_loss_last_epoch"] < 0.5 * results["train_loss_first_epoch"]
    assert results["accuracy"] >= 0.8
    assert (tmp_path / "classifier.keras").is_file()
    assert (tmp_path / "serving" / "1" / "saved_model.pb").is_file()
    assert "held-out accuracy" in output


@pytest.mark.slow
def test_visualize_attention_writes_a_png(tmp_path, minilm_dir):
    png = tmp_path / "attention.png"
    output = run_example(
        "visualize_attention.py", f"--checkpoint={minilm_dir}", "--text=The cat sat.",
        "--text_pair=It slept.", "--layer=0", f"--output={png}",
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "12 panel(s), 10 tokens" in output


@pytest.mark.slow
def test_visualize_attention_rejects_a_layer_the_checkpoint_lacks(tmp_path, minilm_dir):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "visualize_attention.py"),
         f"--checkpoint={minilm_dir}", "--layer=6", f"--output={tmp_path / 'a.png'}"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode != 0
    assert "--layer=6, but the checkpoint has 6 encoder layers" in result.stderr
    assert not (tmp_path / "a.png").exists()
