"""`benchmarks/train.py`: flags, data, NaN detection, and end-to-end runs on tiny models."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from benchmarks import train

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--steps=2", "--repeats=2", "--warmup=1", "--jit_compile=false"]


def run_benchmark(*args: str, backend: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, KERAS_BACKEND=backend or keras.backend.backend(),
               TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train.py"), *args],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )


def check_report(report: dict, libraries: list[str], repeats: int = 2) -> None:
    """Every figure present, positive and consistent with the others."""
    results = report["results"]
    assert [r["library"] for r in results] == libraries
    settings = report["settings"]
    reference = report["model"]["num_parameters"]
    assert report["parameter_counts"]["agree"], report["parameter_counts"]
    assert set(report["parameter_counts"]["by_library"]) == {"keras_llm", *libraries}
    for r in results:
        assert r["num_parameters"] == reference > 0
        assert len(r["seconds"]) == repeats and min(r["seconds"]) > 0
        sps = r["samples_per_second"]
        assert 0 < sps["min"] <= sps["median"] <= sps["max"]
        assert r["compile_seconds"] > 0 and r["ms_per_step"] > 0
        assert r["tokens_per_second"] == pytest.approx(
            sps["median"] * settings["tokens_per_sample"])
        assert r["tflops"] == pytest.approx(6 * reference * r["tokens_per_second"] / 1e12)
        assert all(math.isfinite(loss) for loss in [r["first_loss"], *r["losses"]])
        if "keras_hub" in libraries:
            assert r["speedup_vs_keras_hub"] == pytest.approx(
                sps["median"] / next(x["samples_per_second"]["median"] for x in results
                                     if x["library"] == "keras_hub"))
    assert report["environment"]["keras_backend"] in ("tensorflow", "jax")
    assert report["environment"]["device"]
    assert {"keras", "keras-hub", "keras_llm"} <= set(report["environment"]["versions"])


# Fast: flags, data, figures, failure handling.


@pytest.mark.parametrize("argv, message", [
    (["--libraries=keras_llm,vllm"], "--libraries"),
    (["--model=gpt", "--size=bert_tiny"], "not a Gpt preset"),
    (["--model=resnet"], "--model"),
    (["--dtype=float64"], "--dtype"),
    (["--steps=0"], "--steps"),
    (["--dropout=1.5"], "--dropout"),
    (["--attention_dropout=-0.1"], "--attention_dropout"),
    (["--model=t5", "--attention_dropout=0"], "T5 (as in Hugging Face) has one dropout"),
    (["--keras_loop=train_on_batch", "--steps_per_execution=4"], "--steps_per_execution"),
])
def test_bad_flags_are_rejected(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults_follow_the_model():
    bert = train.parse_args(["--libraries=keras_llm"])
    assert (bert.size, bert.batch_size, bert.sequence_length) == ("bert_base", 32, 128)
    gpt = train.parse_args(["--model=gpt", "--libraries=keras_llm,keras_hub"])
    assert (gpt.size, gpt.batch_size, gpt.sequence_length) == ("gpt2_small", 8, 1024)
    assert gpt.libraries == ["keras_llm", "keras_hub"]
    t5 = train.parse_args(["--model=t5", "--libraries=keras_hub,keras_llm"])
    assert (t5.size, t5.sequence_length, t5.decoder_length) == ("t5_small", 512, 128)
    assert t5.libraries == ["keras_llm", "keras_hub"]  # Always in the table's order.


def test_check_loss_accepts_finite_and_rejects_nan_and_inf():
    assert train.check_loss("keras_llm", np.float32(0.69), "on the first step") == \
        pytest.approx(0.69)
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(train.BenchmarkError, match="keras_hub gave a .* loss in repeat 2"):
            train.check_loss("keras_hub", bad, "in repeat 2")


def test_a_nan_loss_in_a_timed_repeat_stops_the_benchmark(monkeypatch):
    args = train.parse_args(["--size=bert_tiny", "--libraries=keras_llm", "--steps=2",
                             "--repeats=3", "--warmup=1", "--in_process"])
    losses = iter([0.7, 0.69, 0.68, float("nan"), 0.6])
    trainer = train.Trainer("keras_llm", 10, lambda steps: next(losses))
    monkeypatch.setattr(train, "make_trainer", lambda *args: trainer)
    context = train.Context(None, train.make_batch(args, vocab_size=100), {})
    session = train.LocalSession(args, "keras_llm", context)
    session.repeat()
    with pytest.raises(train.BenchmarkError, match="keras_llm gave a nan loss in timed repeat 2"):
        session.repeat()


def test_main_exits_non_zero_and_writes_nothing_on_failure(monkeypatch, tmp_path, capsys):
    def fail(args):
        raise train.BenchmarkError("huggingface gave a nan loss in timed repeat 1")

    monkeypatch.setattr(train, "run", fail)
    output = tmp_path / "t.json"
    assert train.main(["--size=bert_tiny", "--libraries=keras_llm", f"--output={output}"]) == 1
    assert "FAILED: huggingface gave a nan loss" in capsys.readouterr().err
    assert not output.exists()


def test_every_library_gets_the_same_random_data():
    for model, size in (("bert", "bert_tiny"), ("gpt", "gpt2_tiny"), ("t5", "t5_tiny")):
        args = train.parse_args([f"--model={model}", f"--size={size}", "--batch_size=3",
                                 "--sequence_length=7", "--decoder_length=5",
                                 "--libraries=keras_llm"])
        first, second = train.make_batch(args, 50), train.make_batch(args, 50)
        for key, value in first.inputs.items():
            np.testing.assert_array_equal(value, second.inputs[key])
            assert value.shape[0] == 3 and value.dtype == np.int32
        ids = first.inputs.get("token_ids", first.inputs.get("encoder_token_ids"))
        assert ids.shape == (3, 7) and ids.min() >= 1 and ids.max() < 50
        if model == "bert":
            assert first.tokens_per_sample == 7
            assert set(np.unique(first.labels)) <= {0, 1} and first.labels.shape == (3,)
        if model == "t5":
            assert first.tokens_per_sample == 12 and first.labels.shape == (3, 5)
            decoder = first.inputs["decoder_token_ids"]
            np.testing.assert_array_equal(decoder[:, 0], 0)  # The start token.
            np.testing.assert_array_equal(decoder[:, 1:], first.labels[:, :-1])
    other = train.parse_args(["--size=bert_tiny", "--libraries=keras_llm", "--seed=1"])
    assert not np.array_equal(train.make_batch(other, 50).inputs["token_ids"][:3, :7], ids)


def test_derived_figures_and_parameter_counts():
    common = {"num_parameters": 100, "ms_per_step": 5.0, "compile_seconds": 2.0}
    results = [
        {"library": "keras_llm", "tokens_per_second": 2e6,
         "samples_per_second": {"median": 30.0, "min": 29.0, "max": 31.0}, **common},
        {"library": "keras_hub", "tokens_per_second": 1e6,
         "samples_per_second": {"median": 20.0, "min": 19.0, "max": 21.0}, **common},
    ]
    train.add_derived_figures(results, reference_parameters=100)
    assert results[0]["tflops"] == pytest.approx(6 * 100 * 2e6 / 1e12)
    assert results[0]["speedup_vs_keras_hub"] == pytest.approx(1.5)
    assert results[1]["speedup_vs_keras_hub"] == 1.0
    assert train.parameter_counts(results, 100)["agree"]
    results[1]["num_parameters"] = 101
    assert not train.parameter_counts(results, 100)["agree"]
    assert "keras_hub" in train.table(results) and "1.50x" in train.table(results)


def test_attention_dropout_defaults_to_dropout():
    assert train.parse_args(["--libraries=keras_llm", "--dropout=0.2"]).attention_dropout == 0.2
    assert train.parse_args(["--libraries=keras_llm", "--attention_dropout=0"]).attention_dropout \
        == 0.0


def test_keras_hub_attention_dropout_is_set_on_every_attention_layer(attention_kernel_calls):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8, dropout=0.1)
    inputs = {"token_ids": np.ones((1, 8), "int32"), "segment_ids": np.zeros((1, 8), "int32"),
              "padding_mask": np.ones((1, 8), "int32")}
    backbone(inputs)
    assert train.set_keras_attention_dropout(backbone, 0.0) == 2
    attention_kernel_calls.clear()
    backbone(inputs, training=True)
    # Training reaches the fused kernel: no dropout on the probabilities.
    assert len(attention_kernel_calls) == 2
    with pytest.raises(train.BenchmarkError, match="no keras.layers.MultiHeadAttention"):
        train.set_keras_attention_dropout(keras.Sequential([keras.layers.Dense(2)]), 0.0)


def test_a_sequence_longer_than_the_preset_is_a_clear_error():
    args = train.parse_args(["--model=gpt", "--size=gpt2_tiny", "--sequence_length=300",
                             "--libraries=keras_llm"])
    with pytest.raises(train.BenchmarkError, match="--sequence_length=300 exceeds gpt2_tiny"):
        train.make_context(args)


# Slow: the whole benchmark on tiny models.


@pytest.mark.slow
def test_bert_with_every_library_each_in_its_own_process(tmp_path):
    output = tmp_path / "bert.json"
    libraries = ["keras_llm", "keras_hub", "huggingface"]
    result = run_benchmark("--size=bert_tiny", "--batch_size=4", "--sequence_length=16", *TINY,
                           f"--libraries={','.join(libraries)}", f"--output={output}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(output.read_text())
    check_report(report, libraries)
    assert report["settings"]["one_process_per_library"]
    assert report["settings"]["schedule"] == "interleaved"
    assert report["model"]["hidden_size"] == 128 and report["model"]["num_layers"] == 2
    for r in report["results"]:  # Random labels over 2 classes: about ln 2.
        assert abs(r["first_loss"] - math.log(2)) < 0.2
    hf = report["results"][2]
    assert hf["device"] == "cpu" and hf["attn_implementation"] == "sdpa"
    assert "vs keras-hub" in result.stdout and "TFLOP/s" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("model, size, loss_range", [
    ("gpt", "gpt2_tiny", (9.5, 12.0)),  # Random tokens over 50,257 ids: about ln V = 10.8.
    ("t5", "t5_tiny", (5.0, 200.0)),  # T5's unit-variance embeddings start far from ln V.
])
def test_causal_and_seq2seq_models_train_in_one_process(model, size, loss_range, tmp_path):
    output = tmp_path / f"{model}.json"
    result = run_benchmark(f"--model={model}", f"--size={size}", "--batch_size=2",
                           "--sequence_length=16", "--decoder_length=8", *TINY, "--in_process",
                           "--libraries=keras_llm,keras_hub", f"--output={output}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(output.read_text())
    check_report(report, ["keras_llm", "keras_hub"])
    assert not report["settings"]["one_process_per_library"]
    tokens = 16 + 8 if model == "t5" else 16
    assert report["settings"]["tokens_per_sample"] == tokens
    for r in report["results"]:
        assert loss_range[0] < r["first_loss"] < loss_range[1], (r["library"], r["first_loss"])


@pytest.mark.slow
def test_jax_backend_sequential(tmp_path):
    output = tmp_path / "jax.json"
    result = run_benchmark("--size=bert_tiny", "--batch_size=4", "--sequence_length=16",
                           "--steps=2", "--repeats=2", "--warmup=0", "--schedule=sequential",
                           "--attention_dropout=0", "--libraries=keras_llm,keras_hub",
                           f"--output={output}", backend="jax")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(output.read_text())
    check_report(report, ["keras_llm", "keras_hub"])
    assert report["environment"]["keras_backend"] == "jax"
    assert report["settings"]["schedule"] == "sequential"
    assert (report["settings"]["dropout"], report["settings"]["attention_dropout"]) == (0.1, 0.0)


@pytest.mark.slow
def test_a_diverging_library_fails_the_run_loudly(tmp_path):
    output = tmp_path / "nan.json"
    # An absurd learning rate sends the weights to infinity after the first update.
    result = run_benchmark("--size=bert_tiny", "--batch_size=4", "--sequence_length=16",
                           *TINY, "--learning_rate=1e30", "--libraries=keras_hub",
                           f"--output={output}")
    assert result.returncode == 1
    assert re.search("FAILED: keras_hub gave a (nan|inf|-inf) loss", result.stderr), \
        result.stderr[-3000:]
    assert not output.exists()
