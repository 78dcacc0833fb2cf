"""`train_gpt.py` and `train_t5.py` on the JAX backend, each model split over two CPU devices.

`--strategy=model_parallel --model_parallelism=2` sets `keras.distribution.ModelParallel`
with the Gpt / T5 layout map (Megatron-style kernels over the model axis) before the model is
built; the runs train, validate, checkpoint and write their results like single-device runs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # A JAX process each: about 30-40 s of two shared CPU cores.


def run_on_jax(script: str, *args: str) -> None:
    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
                   "TF_CPP_MIN_LOG_LEVEL": "3",
                   "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / script), *args,
         "--strategy=model_parallel", "--model_parallelism=2"],
        env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


def test_train_gpt_model_parallel(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 60)
    out = tmp_path / "run"
    run_on_jax("train_gpt.py", f"--text_file={text}", f"--output_dir={out}", "--num_layers=1",
               "--num_heads=2", "--hidden_size=32", "--sequence_length=32", "--batch_size=4",
               "--steps_per_checkpoint=2", "--validation_batches=2", "--sample_tokens=8",
               "--sample_prompt=To", "--train_steps=4")
    results = json.loads((out / "results.json").read_text())
    assert results["train_steps"] == 4 and results["validation_loss"] < math.log(256)
    assert (out / "model.keras").is_file()


def test_train_t5_model_parallel(tmp_path):
    words = ["red", "green", "blue", "black", "white", "pink"]
    rows = [f"copy: {a} {b}\t{a}" for a in words for b in words]
    (tmp_path / "pairs.tsv").write_text("input\ttarget\n" + "\n".join(rows * 3) + "\n")
    out = tmp_path / "run"
    run_on_jax("train_t5.py", "--task=pairs", f"--train_file={tmp_path / 'pairs.tsv'}",
               f"--output_dir={out}", "--num_layers=1", "--num_heads=2", "--hidden_size=32",
               "--intermediate_size=64", "--vocab_size=300", "--batch_size=8",
               "--max_input_length=24", "--max_target_length=4", "--steps_per_checkpoint=2",
               "--eval_examples=16", "--train_steps=4")
    results = json.loads((out / "results.json").read_text())
    assert math.isfinite(results["validation_loss"]) and len(results["samples"]) == 5
