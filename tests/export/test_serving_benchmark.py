"""`benchmarks/serving.py` end to end with tiny sizes: both libraries timed, JSON written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_serving_benchmark_smoke(tmp_path):
    output = tmp_path / "serving.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "serving.py"), "--preset=bert_tiny",
         f"--vocabulary={ROOT / 'keras_llm' / 'data' / 'sample' / 'vocab.txt'}",
         "--sequence_length=16", "--batch_sizes=1,2", "--warmup=1", "--repeats=2",
         f"--output={output}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env=dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert {(r["library"], r["batch_size"]) for r in report["results"]} == {
        ("keras_llm", 1), ("keras_llm", 2), ("keras_hub", 1), ("keras_hub", 2)}
    for row in report["results"]:
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["examples_per_second"] > 0 and len(row["seconds"]) == 2
    assert report["settings"]["sequence_length"] == 16
