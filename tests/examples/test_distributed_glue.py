"""`run_glue.py` under tf.distribute: two mirrored replicas on one CPU, and two worker processes.

Mirrored: the CPU is split into two logical devices (`--cpu_devices=2`); with the
same global batch and no dropout the loss curve equals the one-device run's.
Multi-worker: two processes on localhost ports (`TF_CONFIG`) train together;
killed mid-way and restarted with the same flags, they resume from the chief's
checkpoint.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from keras_llm.data import SAMPLE_DIR

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory) -> Path:
    """The shipped sentiment sample in GLUE's SST-2 layout (same header: sentence, label)."""
    folder = tmp_path_factory.mktemp("SST-2")
    lines = (SAMPLE_DIR / "sentiment.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    (folder / "train.tsv").write_text("\n".join([header, *rows[:256]]) + "\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("\n".join([header, *rows[256:]]) + "\n", encoding="utf-8")
    return folder


def glue_command(data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(REPO / "examples" / "run_glue.py"), "--task=sst2",
        f"--data_dir={data_dir}", "--init_checkpoint=bert_tiny",
        f"--vocab_file={SAMPLE_DIR / 'vocab.txt'}", "--max_seq_length=32", "--batch_size=16",
        "--eval_batch_size=32", "--learning_rate=1e-3", "--dropout=0", "--seed=3",
        f"--output_dir={output_dir}", *extra,
    ]


def environment(**variables) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    env.update(variables)
    return env


def results(output_dir: Path) -> dict:
    return json.loads((output_dir / "results.json").read_text())


def test_two_mirrored_replicas_follow_the_one_device_loss_curve(sst2_dir, tmp_path):
    steps = ["--num_train_steps=6", "--steps_per_checkpoint=1"]
    one = tmp_path / "one_device"
    two = tmp_path / "mirrored"
    subprocess.run(glue_command(sst2_dir, one, *steps, "--strategy=one_device"),
                   env=environment(), check=True, timeout=600, capture_output=True)
    subprocess.run(glue_command(sst2_dir, two, *steps, "--strategy=mirrored", "--cpu_devices=2"),
                   env=environment(), check=True, timeout=600, capture_output=True)
    one_results, two_results = results(one), results(two)
    assert (one_results["num_replicas"], two_results["num_replicas"]) == (1, 2)
    one_curve = np.array(one_results["train_loss_history"])
    two_curve = np.array(two_results["train_loss_history"])
    assert len(one_curve) == len(two_curve) == 6
    # Same weights, same batches (shuffle_epochs): the first steps agree to float round-off;
    # then the order of the cross-replica gradient sum, amplified by Adam's normalised early
    # updates, moves the curves apart by a few parts in a thousand.
    np.testing.assert_allclose(two_curve[:2], one_curve[:2], rtol=1e-5)
    np.testing.assert_allclose(two_curve, one_curve, rtol=1e-2)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(command: list[str], log_dir: Path) -> list[subprocess.Popen]:
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        log = open(log_dir / f"worker{index}.log", "ab")  # noqa: SIM115 - closed with the process
        workers.append(subprocess.Popen(command, env=environment(TF_CONFIG=config),
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True))
    return workers


def wait(workers: list[subprocess.Popen], log_dir: Path, timeout: float = 600) -> None:
    for index, worker in enumerate(workers):
        code = worker.wait(timeout=timeout)
        assert code == 0, (log_dir / f"worker{index}.log").read_text()[-3000:]


def test_two_workers_train_and_resume_after_a_kill(sst2_dir, tmp_path):
    output = tmp_path / "multi_worker"
    command = glue_command(sst2_dir, output, "--strategy=multi_worker", "--num_train_steps=120",
                           "--steps_per_checkpoint=2")
    workers = start_workers(command, tmp_path)
    state = output / "checkpoints" / "checkpoint_state.json"
    deadline = time.time() + 600
    while time.time() < deadline:
        if state.exists() and json.loads(state.read_text())["step"] >= 4:
            break
        assert all(w.poll() is None for w in workers), (tmp_path / "worker0.log").read_text()
        time.sleep(0.2)
    for worker in workers:  # A preemption: both workers die mid-run.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 4 <= killed_at < 120, killed_at
    assert not (output / "results.json").exists()

    wait(start_workers(command, tmp_path), tmp_path)
    final = results(output)
    assert final["resumed_from_step"] >= killed_at
    assert final["train_steps"] == 120 and final["num_replicas"] == 2
    assert json.loads(state.read_text())["step"] == 120
    assert 0.0 <= final["accuracy"] <= 1.0
