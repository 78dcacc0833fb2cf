"""`benchmarks/device_check.sh`, the GPU lease's one command, in its CPU smoke mode."""

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_step_writes_its_report(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), DEVICE_CHECK_SMOKE="1",
               DEVICE_CHECK_WHEELS=str(tmp_path / "no_wheels"))
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh")], env=env,
                            capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "status 0" in (tmp_path / "device_check.log").read_text()
    expected = {"train_bert.json": ["keras_llm", "keras_hub", "huggingface"],
                "generate.json": ["keras_llm", "keras_hub", "huggingface"],
                "train_bert_attention_dropout0.json": ["keras_llm", "keras_hub"]}
    for name, libraries in expected.items():
        report = json.loads((tmp_path / name).read_text())
        assert report["environment"]["keras_backend"] == "jax"
        assert sorted({r["library"] for r in report["results"]}) == sorted(libraries), name
    loops = json.loads((tmp_path / "decode_hlo.json").read_text())["loops"]
    # keras-llm's and keras-hub's decode loops at batch 1 and 16, each with its kernels per token
    assert sorted(loop["module"] for loop in loops) == sorted(
        ["jit_stateless", "jit_stateless", "jit_compiled_generate_function",
         "jit_compiled_generate_function"])
    assert all(loop["launches"] > 0 and loop["cache_buffer"] for loop in loops)
    with tarfile.open(tmp_path / "decode_hlo_text.tar.gz") as archive:
        assert sorted(name.split(".")[1] for name in archive.getnames()) == sorted(
            loop["module"] for loop in loops)
    dropout0 = json.loads((tmp_path / "train_bert_attention_dropout0.json").read_text())
    assert dropout0["settings"]["attention_dropout"] == 0.0
