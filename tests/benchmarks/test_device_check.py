"""`benchmarks/device_check.sh`, the GPU lease's one command, in its CPU smoke mode."""

import json
import os
import subprocess
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
    dropout0 = json.loads((tmp_path / "train_bert_attention_dropout0.json").read_text())
    assert dropout0["settings"]["attention_dropout"] == 0.0
