"""`run_glue.py` on the JAX backend over two CPU devices: data parallel and model parallel.

`--strategy=auto` with two host devices (`XLA_FLAGS=--xla_force_host_platform_device_count=2`)
is `keras.distribution.DataParallel`: two replicas. `--strategy=model_parallel
--model_parallelism=2 --cpu_devices=2` splits each encoder block's kernels over both devices
(`keras.distribution.ModelParallel`): one replica. With no dropout and the same batches both
follow the same loss curve. The development set (33 examples) ends on a batch that does not
divide over two devices, which Keras' JAX trainer cannot place; the run pads it. The
TensorFlow Serving export needs TensorFlow: the JAX runs skip it and say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_llm.data import SAMPLE_DIR

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # A JAX process each: about 30-40 s of two shared CPU cores.
STEPS = 4
DEV_EXAMPLES = 33


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory) -> Path:
    """The shipped sentiment sample in GLUE's SST-2 layout (same header: sentence, label)."""
    folder = tmp_path_factory.mktemp("SST-2")
    lines = (SAMPLE_DIR / "sentiment.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    (folder / "train.tsv").write_text("\n".join([header, *rows[:64]]) + "\n", encoding="utf-8")
    dev = rows[256:256 + DEV_EXAMPLES]
    (folder / "dev.tsv").write_text("\n".join([header, *dev]) + "\n", encoding="utf-8")
    return folder


def run_glue(data_dir: Path, output_dir: Path, *extra: str, env: dict | None = None):
    command = [
        sys.executable, str(REPO / "examples" / "run_glue.py"), "--task=sst2",
        f"--data_dir={data_dir}", "--init_checkpoint=bert_tiny",
        f"--vocab_file={SAMPLE_DIR / 'vocab.txt'}", "--max_seq_length=32", "--batch_size=8",
        "--eval_batch_size=16", "--learning_rate=1e-3", "--dropout=0", "--seed=3",
        f"--num_train_steps={STEPS}", "--steps_per_checkpoint=2",
        f"--output_dir={output_dir}", f"--export_dir={output_dir / 'serving'}", *extra,
    ]
    environment = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
                   "JAX_PLATFORMS": "cpu", **(env or {})}
    result = subprocess.run(command, env=environment, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads((output_dir / "results.json").read_text()), result.stderr


@pytest.fixture(scope="module")
def data_parallel(sst2_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("data_parallel")
    return output, *run_glue(
        sst2_dir, output, "--strategy=auto",
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})


@pytest.fixture(scope="module")
def model_parallel(sst2_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("model_parallel")
    return output, *run_glue(sst2_dir, output, "--strategy=model_parallel",
                             "--model_parallelism=2", "--cpu_devices=2")


def check_run(output: Path, results: dict, log: str) -> None:
    assert results["train_steps"] == STEPS and len(results["train_loss_history"]) == 2
    assert np.isfinite(results["train_loss_history"]).all()
    # Every development example was scored, the odd last batch included.
    assert results["num_eval_examples"] == {"dev": DEV_EXAMPLES}
    assert 0.0 <= results["accuracy"] <= 1.0
    assert (output / "model.keras").is_file()
    assert (output / "checkpoints" / "checkpoint_state.json").is_file()
    # No SavedModel on JAX, and the log says why and how to export.
    assert "export" not in results and not (output / "serving").exists()
    assert "Skipping --export_dir" in log and "KERAS_BACKEND=tensorflow" in log


def test_data_parallel_run_glue_on_two_devices(data_parallel):
    output, results, log = data_parallel
    assert (results["num_replicas"], results["model_parallelism"]) == (2, 1)
    check_run(output, results, log)


def test_model_parallel_run_glue_on_two_devices(model_parallel):
    output, results, log = model_parallel
    assert (results["num_replicas"], results["model_parallelism"]) == (1, 2)
    assert "each split over 2 devices" in log
    check_run(output, results, log)


def test_both_follow_the_same_loss_curve(data_parallel, model_parallel):
    data_results, model_results = data_parallel[1], model_parallel[1]
    np.testing.assert_allclose(model_results["train_loss_history"],
                               data_results["train_loss_history"], rtol=1e-4)
    assert abs(model_results["accuracy"] - data_results["accuracy"]) <= 1 / DEV_EXAMPLES
