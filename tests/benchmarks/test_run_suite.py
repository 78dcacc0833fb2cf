"""`benchmarks/run.py`: flags, the combined table and chart, and the smoke suite end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from benchmarks import run as suite

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_suite(*args: str, backend: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("KERAS_BACKEND", None)
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.run",
         f"--backend={backend or keras.backend.backend()}", *args],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )


def train_report(model="bert", speedup=1.25):
    results = []
    for library, factor in (("keras_llm", speedup), ("keras_hub", 1.0)):
        results.append({"library": library, "samples_per_second": {"median": 10.0 * factor},
                        "speedup_vs_keras_hub": factor, "tflops": 0.5 * factor})
    settings = {"model": model, "size": f"{model}_tiny", "batch_size": 4,
                "sequence_length": 16, "decoder_length": 8, "dtype": "float32"}
    return {"settings": settings, "results": results}


@pytest.mark.parametrize("argv, message", [
    (["--suite=everything"], "--suite"),
    (["--train_models=bert,resnet"], "--train_models"),
    (["--generate_models=gpt,bart"], "--generate_models"),
    (["--device=tpu"], "--device"),
    (["--backend=numpy"], "--backend"),
])
def test_bad_flags_are_rejected(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        suite.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_suite_all_runs_every_suite():
    assert suite.parse_args(["--suite=all"]).suites == ["train", "generate", "serve"]
    assert suite.parse_args(["--suite=serve"]).suites == ["serve"]


def test_cpu_device_hides_gpus_and_another_backend_needs_a_fresh_process():
    current = keras.backend.backend()
    other = "jax" if current == "tensorflow" else "tensorflow"
    changes = suite.environment_changes(suite.parse_args([f"--backend={other}", "--device=cpu"]))
    assert changes["KERAS_BACKEND"] == other
    assert changes["CUDA_VISIBLE_DEVICES"] == "" and changes["JAX_PLATFORMS"] == "cpu"
    assert suite.needs_fresh_process(changes)  # Keras is imported here with `current`.
    auto = suite.environment_changes(suite.parse_args([f"--backend={current}"]))
    assert "CUDA_VISIBLE_DEVICES" not in auto


def test_rows_table_and_chart(tmp_path):
    generate = {"settings": {"model": "gpt", "size": "gpt2_tiny", "prompt_length": 4,
                             "max_new_tokens": 4, "dtype": "float32"},
                "results": [{"library": "keras_llm", "batch_size": 1,
                             "tokens_per_second": {"median": 300.0}, "ms_per_step": 3.3,
                             "speedup_vs_keras_hub": 2.0},
                            {"library": "keras_hub", "batch_size": 1,
                             "tokens_per_second": {"median": 150.0}, "ms_per_step": 6.6,
                             "speedup_vs_keras_hub": 1.0}]}
    serve = {"settings": {"preset": "bert_tiny", "sequence_length": 16},
             "results": [{"library": "keras_llm", "batch_size": 1, "examples_per_second": 90.0,
                          "p50_ms": 11.1},
                         {"library": "keras_hub", "batch_size": 1, "examples_per_second": 60.0,
                          "p50_ms": 16.7}]}
    suite.add_serving_speedups(serve["results"])
    assert serve["results"][0]["speedup_vs_keras_hub"] == pytest.approx(1.5)
    rows = (suite.rows_of("train", train_report("t5"))
            + suite.rows_of("generate", generate) + suite.rows_of("serve", serve))
    assert [r["suite"] for r in rows] == ["train"] * 2 + ["generate"] * 2 + ["serve"] * 2
    assert rows[0]["case"] == "t5 t5_tiny 4x16->8 float32"
    assert rows[2]["case"] == "gpt gpt2_tiny b1 4+4 float32"
    generate["settings"].update(model="t5", size="t5_tiny")
    assert suite.rows_of("generate", generate)[0]["case"] == "t5 t5_tiny b1 4->4 float32"
    assert rows[0]["value"] == pytest.approx(12.5)
    rows.append({"suite": "serve", "case": "-", "library": "-", "metric": "-", "value": None,
                 "speedup_vs_keras_hub": None, "note": "skipped: needs TensorFlow"})
    text = suite.combined_table(rows)
    for expected in ("1.25x", "2.00x", "1.50x", "skipped: needs TensorFlow", "new tokens/s"):
        assert expected in text
    chart = suite.write_chart(tmp_path / "chart.png", rows, "test")
    assert chart.read_bytes().startswith(PNG_SIGNATURE)
    empty = suite.write_chart(tmp_path / "empty.png", rows[-1:], "nothing measured")
    assert empty.read_bytes().startswith(PNG_SIGNATURE)


def test_a_failed_model_loses_only_its_own_figures(monkeypatch):
    def fake_generate(args, model, size, device_type):
        if model == "t5":
            raise RuntimeError("t5 decoding broke")
        return {"settings": {"model": model, "size": "gpt2_tiny", "prompt_length": 4,
                             "max_new_tokens": 4, "dtype": "float32"},
                "results": [{"library": "keras_llm", "batch_size": 1,
                             "tokens_per_second": {"median": 10.0}, "ms_per_step": 1.0,
                             "speedup_vs_keras_hub": 1.0}]}

    monkeypatch.setattr(suite, "run_generate", fake_generate)
    report, status = suite.run(suite.parse_args(["--suite=generate", "--smoke"]))
    assert status == 1
    assert report["failures"] == [{"suite": "generate", "model": "t5",
                                   "error": "RuntimeError: t5 decoding broke"}]
    gpt, t5 = report["reports"]["generate"]
    assert gpt["results"] and t5 == {"model": "t5", "failed": "RuntimeError: t5 decoding broke"}
    assert [row["case"].split()[0] for row in report["rows"]] == ["gpt", "t5"]
    assert report["rows"][1]["note"].startswith("FAILED")


@pytest.mark.slow
def test_smoke_suite_writes_json_and_png(tmp_path):
    result = run_suite("--suite=all", "--smoke", "--device=cpu", f"--output_dir={tmp_path}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads((tmp_path / "suite_cpu_smoke.json").read_text())
    assert (tmp_path / "suite_cpu_smoke.png").read_bytes().startswith(PNG_SIGNATURE)
    assert report["settings"]["size"] == "smoke" and report["failures"] == []
    assert report["environment"]["device_type"] == "cpu"
    assert {"keras", "keras-hub", "keras_llm"} <= set(report["environment"]["versions"])
    rows = report["rows"]
    train_cases = {r["case"].split()[0] for r in rows if r["suite"] == "train"}
    assert train_cases == {"bert", "gpt", "t5"}
    measured = [r for r in rows if r["value"] is not None]
    assert {(r["suite"], r["library"]) for r in measured} >= {
        (s, lib) for s in ("train", "generate") for lib in ("keras_llm", "keras_hub")}
    assert all(r["value"] > 0 and r["speedup_vs_keras_hub"] > 0 for r in measured)
    assert len(report["reports"]["train"]) == 3
    generate_cases = {r["case"].split()[0] for r in rows if r["suite"] == "generate"}
    assert generate_cases == {"gpt", "t5"}
    if keras.backend.backend() == "tensorflow":
        assert {r["library"] for r in rows if r["suite"] == "serve"} == {"keras_llm",
                                                                         "keras_hub"}
    assert "vs keras-hub" in result.stdout and "Wrote" in result.stdout


@pytest.mark.slow
def test_serve_is_skipped_not_crashed_under_jax(tmp_path):
    result = run_suite("--suite=serve", "--smoke", "--device=cpu", f"--output_dir={tmp_path}",
                       backend="jax")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads((tmp_path / "suite_cpu_smoke.json").read_text())
    assert report["settings"]["backend"] == "jax"
    assert report["reports"]["serve"]["skipped"].startswith("skipped: needs TensorFlow")
    assert "skipped: needs TensorFlow" in result.stdout
    assert (tmp_path / "suite_cpu_smoke.png").is_file()
