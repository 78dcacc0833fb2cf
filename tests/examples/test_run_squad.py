"""examples/run_squad.py end to end: a short MiniLM fine-tune that improves F1, and SQuAD v2.0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.examples.test_examples import run_example


def _subset(articles: list[dict], every: int, impossible_every: int = 0) -> dict:
    """Every `every`-th question of `articles` (spread over all of them); with
    `impossible_every`, every such question of those is made unanswerable (SQuAD v2.0)."""
    kept, index, count = [], 0, 0
    for article in articles:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            qas = []
            for qa in paragraph["qas"]:
                if index % every == 0:
                    qa = dict(qa)
                    count += 1
                    if impossible_every and count % impossible_every == 0:
                        qa.update(is_impossible=True, plausible_answers=qa["answers"],
                                  answers=[])
                    elif impossible_every:
                        qa["is_impossible"] = False
                    qas.append(qa)
                index += 1
            if qas:
                paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            kept.append({**article, "paragraphs": paragraphs})
    return {"version": "v2.0" if impossible_every else "1.1", "data": kept}


def _write(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def _questions(data: dict) -> int:
    return sum(len(p["qas"]) for a in data["data"] for p in a["paragraphs"])


@pytest.fixture(scope="module")
def dev_articles(shared_data) -> list[dict]:
    with open(shared_data / "squad" / "dev-v1.1.json", encoding="utf-8") as f:
        articles = json.load(f)["data"]
    assert len(articles) == 48
    return articles


@pytest.mark.slow
def test_short_minilm_fine_tune_improves_f1(tmp_path, dev_articles, minilm_dir):
    # Only the dev file exists here: train on questions of its first 40 articles, score on
    # questions of the other 8 (no article in both).
    train = _subset(dev_articles[:40], every=12)
    dev = _subset(dev_articles[40:], every=8)
    assert (_questions(train), _questions(dev)) == (749, 199)
    # 100 steps of 16 windows of 128 tokens, and two passes over the 442 dev windows: about
    # 2.5 CPU-minutes.
    out = tmp_path / "run"
    run_example(
        "run_squad.py", f"--train_file={_write(tmp_path / 'train.json', train)}",
        f"--predict_file={_write(tmp_path / 'dev.json', dev)}", f"--init_checkpoint={minilm_dir}",
        f"--output_dir={out}", "--max_seq_length=128", "--doc_stride=64",
        "--max_query_length=32", "--batch_size=16", "--num_train_steps=100",
        "--steps_per_checkpoint=100", "--learning_rate=3e-4", "--skip_windows_without_answer",
        "--eval_at_start", "--nosave_model",
    )
    results = json.loads((out / "results.json").read_text())
    print(f"\nSQuAD dev articles 40-47, {results['num_eval_examples']} questions: F1 "
          f"{results['initial_f1']:.1f} -> {results['f1']:.1f}, EM "
          f"{results['initial_exact_match']:.1f} -> {results['exact_match']:.1f} after "
          f"{results['train_steps']} steps ({results['train_seconds_this_run']} s)")
    assert results["num_eval_examples"] == 199 and results["missing"] == 0
    # Measured here (seeds 1, 2, 42): F1 8 -> 43-48. Without --skip_windows_without_answer
    # (half the 128-token windows lack the answer) 100 steps are not enough for every seed.
    assert results["f1"] > results["initial_f1"] + 20, results
    assert results["exact_match"] > results["initial_exact_match"]

    predictions = json.loads((out / "predictions.json").read_text())
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    assert len(predictions) == len(nbest) == 199
    contexts = {qa["id"]: p["context"] for a in dev["data"] for p in a["paragraphs"]
                for qa in p["qas"]}
    for qid, answer in predictions.items():
        assert answer == nbest[qid][0]["text"]
        start, end = nbest[qid][0]["start_char"], nbest[qid][0]["end_char"]
        assert contexts[qid][start:end] == answer  # original text, not word pieces
    assert not (out / "null_odds.json").exists()


@pytest.mark.slow
def test_version_2_run_then_rescore_the_saved_model(tmp_path, dev_articles, minilm_dir):
    train = _subset(dev_articles[:2], every=20, impossible_every=3)
    dev = _subset(dev_articles[40:41], every=10, impossible_every=3)
    assert any(qa["is_impossible"] for a in dev["data"] for p in a["paragraphs"]
               for qa in p["qas"])
    files = [f"--train_file={_write(tmp_path / 'train.json', train)}",
             f"--predict_file={_write(tmp_path / 'dev.json', dev)}"]
    window = ["--max_seq_length=64", "--doc_stride=32", "--max_query_length=16",
              "--version_2_with_negative"]
    out = tmp_path / "v2"
    run_example("run_squad.py", *files, *window, "--init_checkpoint=bert_tiny",
                f"--vocab_file={Path(minilm_dir) / 'vocab.txt'}", f"--output_dir={out}",
                "--batch_size=8", "--num_train_steps=4", "--steps_per_checkpoint=4")
    results = json.loads((out / "results.json").read_text())
    assert results["version"] == "v2.0"
    assert {"exact_match", "f1", "HasAns_f1", "NoAns_f1", "best_f1", "best_f1_thresh"} <= set(
        results)
    null_odds = json.loads((out / "null_odds.json").read_text())
    predictions = json.loads((out / "predictions.json").read_text())
    assert set(null_odds) == set(predictions) and len(predictions) == _questions(dev)
    assert all((answer == "") == (null_odds[qid] > 0.0) for qid, answer in predictions.items())
    assert (out / "model.keras").is_file() and (out / "vocab.txt").is_file()

    # The saved model scores the same without training; a threshold moves answers to "";
    # the model is exported for TF Serving.
    again = tmp_path / "again"
    run_example("run_squad.py", *files[1:], *window, "--nodo_train",
                f"--init_checkpoint={out / 'model.keras'}", f"--output_dir={again}",
                "--null_score_diff_threshold=-1000", f"--export_dir={tmp_path / 'served'}")
    rescored = json.loads((again / "results.json").read_text())
    assert json.loads((again / "null_odds.json").read_text()) == pytest.approx(null_odds,
                                                                               abs=1e-4)
    assert set(json.loads((again / "predictions.json").read_text()).values()) == {""}
    assert rescored["NoAns_f1"] == 100.0 and rescored["HasAns_f1"] == 0.0
    assert (tmp_path / "served" / "1" / "saved_model.pb").is_file()
