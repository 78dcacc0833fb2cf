"""`benchmarks/generate.py` end to end on a tiny GPT: both libraries measured, figures sane."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "generate.py"), *args],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
    )


@pytest.mark.slow
def test_generate_benchmark_measures_keras_llm_and_keras_hub(tmp_path):
    output = tmp_path / "g.json"
    result = run_benchmark(
        "--size=gpt2_tiny", "--batch_sizes=1,2", "--max_new_tokens=8", "--prompt_length=8",
        "--repeats=2", "--libraries=keras_llm,keras_hub", f"--output={output}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(output.read_text())

    assert report["settings"]["max_new_tokens"] == 8
    assert report["environment"]["keras_backend"] == keras.backend.backend()
    assert report["environment"]["device"]
    assert {"keras", "keras-hub", "keras_llm"} <= set(report["environment"]["versions"])
    assert report["model"]["num_layers"] == 2 and report["model"]["hidden_size"] == 64
    results = report["results"]
    assert {(r["library"], r["batch_size"]) for r in results} == {
        ("keras_llm", 1), ("keras_llm", 2), ("keras_hub", 1), ("keras_hub", 2)
    }
    for r in results:
        assert r["output_shape"] == [r["batch_size"], 16]
        assert len(r["seconds"]) == 2 and min(r["seconds"]) > 0
        tps = r["tokens_per_second"]
        assert 0 < tps["min"] <= tps["median"] <= tps["max"]
        assert r["compile_seconds"] > 0 and r["ms_per_step"] > 0
        assert r["speedup_vs_keras_hub"] > 0
    assert all(r["speedup_vs_keras_hub"] == 1.0 for r in results if r["library"] == "keras_hub")
    assert "vs keras-hub" in result.stdout and "keras_llm" in result.stdout


@pytest.mark.slow
def test_t5_generation_writes_new_tokens_in_every_library(tmp_path):
    output = tmp_path / "g.json"
    result = run_benchmark(
        "--model=t5", "--size=t5_tiny", "--batch_sizes=2", "--max_new_tokens=5",
        "--prompt_length=9", "--repeats=2", "--libraries=keras_llm,keras_hub,huggingface",
        f"--output={output}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["settings"]["model"] == "t5" and report["model"]["num_decoder_layers"] == 2
    assert {r["library"] for r in report["results"]} == {"keras_llm", "keras_hub", "huggingface"}
    for r in report["results"]:
        assert r["output_shape"] == [2, 5]  # the new decoder tokens, no start token
        assert r["tokens_per_second"]["median"] > 0


def test_generate_benchmark_rejects_unknown_libraries(tmp_path):
    result = run_benchmark("--libraries=keras_llm,vllm", f"--output={tmp_path / 'g.json'}")
    assert result.returncode != 0
    assert "--libraries" in result.stderr
    assert not (tmp_path / "g.json").exists()


def test_wrong_output_shape_fails_loudly():
    import numpy as np

    from benchmarks.generate import BenchmarkError, check_output

    prompts = np.arange(6, dtype="int32").reshape(2, 3)
    good = np.concatenate([prompts, np.zeros((2, 4), "int32")], axis=1)
    check_output("lib", prompts, good, (2, 7))
    with pytest.raises(BenchmarkError, match="shape"):
        check_output("lib", prompts, good[:, :-1], (2, 7))
    with pytest.raises(BenchmarkError, match="prompt"):
        check_output("lib", prompts, good + 1, (2, 7))
    # T5 returns only the new tokens: the shape is checked, the prompt cannot be.
    check_output("lib", prompts, np.ones((2, 4), "int32"), (2, 4), keeps_prompt=False)
    with pytest.raises(BenchmarkError, match=r"\(max_new_tokens\)"):
        check_output("lib", prompts, np.ones((2, 3), "int32"), (2, 4), keeps_prompt=False)
