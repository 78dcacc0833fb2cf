"""Fine-tunes BERT for extractive question answering on SQuAD v1.1 or v2.0.

Long contexts are cut into windows of --max_seq_length tokens, --doc_stride tokens apart,
after the question (at most --max_query_length tokens): `[CLS] question [SEP] context [SEP]`.
Answers are mapped from characters to tokens through the tokenizer's offsets, and predicted
answers are the original context text under the best span (the --n_best_size best starts and
ends of every window, at most --max_answer_length tokens). With --version_2_with_negative, a
question is predicted unanswerable when `[CLS]`'s score beats the best span's by more than
--null_score_diff_threshold. The official EM and F1 are computed on --predict_file and
written to <output_dir>/results.json (`exact_match`, `f1`, and for v2.0 the HasAns/NoAns
split and the best threshold); the predictions go to <output_dir>/predictions.json,
nbest_predictions.json and (v2.0) null_odds.json, in the official formats.

    # SQuAD v1.1 from a local Hugging Face or Google BERT folder (it holds vocab.txt):
    python examples/run_squad.py --train_file=squad/train-v1.1.json \\
        --predict_file=squad/dev-v1.1.json --init_checkpoint=/path/to/bert \\
        --output_dir=runs/squad
    # SQuAD v2.0, bfloat16, evaluated every 2000 steps, exported for TF Serving:
    python examples/run_squad.py --version_2_with_negative \\
        --train_file=squad/train-v2.0.json --predict_file=squad/dev-v2.0.json \\
        --init_checkpoint=/path/to/bert --mixed_precision=bfloat16 \\
        --steps_per_checkpoint=1000 --eval_every=2000 --export_dir=exported/squad2
    # Score a fine-tuned model again (or with another threshold) without training:
    python examples/run_squad.py --nodo_train --init_checkpoint=runs/squad/model.keras \\
        --predict_file=squad/dev-v1.1.json --output_dir=runs/squad_eval

By default the files are `train-v1.1.json` / `dev-v1.1.json` (`-v2.0` with
--version_2_with_negative) in --data_dir. A killed run restarted with the same flags resumes
from its last checkpoint. The fine-tuned model is saved as <output_dir>/model.keras (with
its vocab.txt), which --init_checkpoint also takes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras
from absl import app, flags, logging

from keras_llm.data.squad import (
    SquadPredictions,
    create_squad_features,
    postprocess_squad,
    read_squad_examples,
    read_squad_file,
    select_articles,
    squad_dataset,
    write_squad_predictions,
)
from keras_llm.metrics import evaluate_squad
from keras_llm.models import BertQuestionAnswerer
from keras_llm.training import finetuning

SHARED_SQUAD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad"

finetuning.define_flags(
    default_task="squad",
    data_dir=str(SHARED_SQUAD) if SHARED_SQUAD.is_dir() else None,
    output_dir="runs/squad",
    max_seq_length=384,
    batch_size=32,
    learning_rate=5e-5,
    num_train_epochs=2.0,
    steps_per_checkpoint=1000,
)
flags.DEFINE_string("train_file", None,
                    "SQuAD JSON to train on; default <data_dir>/train-v1.1.json (or -v2.0).")
flags.DEFINE_string("predict_file", None,
                    "SQuAD JSON to predict and score; default <data_dir>/dev-v1.1.json (or -v2.0).")
flags.DEFINE_bool("version_2_with_negative", False,
                  "SQuAD v2.0: some questions have no answer ([CLS] stands for 'no answer').")
flags.DEFINE_integer("doc_stride", 128,
                     "Tokens between the starts of consecutive windows of a long context.")
flags.DEFINE_integer("max_query_length", 64, "Questions are cut to this many tokens.")
flags.DEFINE_integer("n_best_size", 20,
                     "Start and end candidates per window, and answers in nbest_predictions.json.")
flags.DEFINE_integer("max_answer_length", 30, "Longest answer, in word pieces.")
flags.DEFINE_float("null_score_diff_threshold", 0.0,
                   "v2.0: predict no answer when [CLS]'s score minus the best span's is above "
                   "this (tune it with results.json's best_f1_thresh).")
flags.DEFINE_bool("skip_windows_without_answer", False,
                  "Train only on the windows that hold the answer (and on every window of an "
                  "unanswerable v2.0 question); faster learning in short runs with short "
                  "windows. By default windows without the answer train [CLS], as in BERT.")
flags.DEFINE_bool("do_train", True, "Fine-tune on --train_file (else only predict).")
flags.DEFINE_bool("do_predict", True, "Predict and score --predict_file.")
flags.DEFINE_bool("eval_at_start", False,
                  "Also score the model before training (initial_exact_match, initial_f1).")
flags.DEFINE_bool("save_model", True, "Save the fine-tuned model as <output_dir>/model.keras.")
flags.adopt_module_key_flags(finetuning)  # --help lists the shared flags too.
FLAGS = flags.FLAGS


def squad_file(explicit: str | None, config: finetuning.FinetuningConfig, split: str) -> str:
    """--train_file / --predict_file, or the SQuAD file of that split in --data_dir."""
    if explicit:
        return explicit
    if not config.data_dir:
        raise app.UsageError(f"Pass --{split}_file (a SQuAD JSON file) or --data_dir.")
    version = "v2.0" if FLAGS.version_2_with_negative else "v1.1"
    name = {"train": "train", "predict": "dev"}[split]
    return os.path.join(config.data_dir, f"{name}-{version}.json")


def copy_vocabulary(vocabulary: str, folder: str) -> None:
    """Puts vocab.txt (and tokenizer_config.json, which says the casing) beside model.keras,
    so that --init_checkpoint=<output_dir>/model.keras finds them."""
    source = os.path.dirname(os.path.abspath(vocabulary))
    for name, target in ((os.path.basename(vocabulary), "vocab.txt"),
                         ("tokenizer_config.json", "tokenizer_config.json")):
        path = os.path.join(source, name)
        destination = os.path.join(folder, target)
        if os.path.isfile(path) and not os.path.exists(destination):
            shutil.copyfile(path, destination)


def first(items: list, limit: int | None) -> list:
    return items[:limit] if limit else items


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.do_train and not FLAGS.do_predict:
        raise app.UsageError("Nothing to do: pass --do_train and/or --do_predict.")
    config = finetuning.FinetuningConfig.from_flags()
    v2 = FLAGS.version_2_with_negative
    window_flags = dict(max_seq_length=config.max_seq_length, doc_stride=FLAGS.doc_stride,
                        max_query_length=FLAGS.max_query_length)

    run = finetuning.FinetuningRun(config, primary_metric="f1")
    tokenizer = run.load_preprocessor().tokenizer

    if FLAGS.do_predict:
        predict_path = squad_file(FLAGS.predict_file, config, "predict")
        predict_data = read_squad_file(predict_path)
        predict_examples = first(read_squad_examples(predict_data, v2), config.max_eval_examples)
        # Score exactly the predicted questions (a missing one would count as wrong).
        articles = select_articles(predict_data["data"], [e.qas_id for e in predict_examples])
        predict_features = create_squad_features(predict_examples, tokenizer, **window_flags)
        predict_batches = squad_dataset(predict_features, config.eval_batch_size,
                                        with_labels=False).cache()
        logging.info("%s: %d questions, %d windows", predict_path, len(predict_examples),
                     len(predict_features))

    model = run.load_model(BertQuestionAnswerer)
    latest: dict[str, SquadPredictions] = {}

    def predict(model: keras.Model) -> SquadPredictions:
        outputs = model.predict(predict_batches, verbose=0)
        latest["predictions"] = postprocess_squad(
            predict_examples, predict_features, outputs["start_logits"], outputs["end_logits"],
            n_best_size=FLAGS.n_best_size, max_answer_length=FLAGS.max_answer_length,
            version_2_with_negative=v2,
            null_score_diff_threshold=FLAGS.null_score_diff_threshold)
        return latest["predictions"]

    def evaluate(model: keras.Model) -> dict[str, float]:
        predictions = predict(model)
        scores = evaluate_squad(
            articles, predictions.predictions,
            no_answer_probabilities=predictions.null_odds if v2 else None,
            no_answer_threshold=FLAGS.null_score_diff_threshold)
        return {k: float(v) for k, v in scores.items() if k not in ("total", "missing")}

    results: dict = {"version": "v2.0" if v2 else "v1.1"}
    if FLAGS.do_predict:
        results.update(predict_file=predict_path, num_eval_examples=len(predict_examples),
                       num_eval_features=len(predict_features))
        if FLAGS.eval_at_start:
            results.update({f"initial_{k}": v for k, v in evaluate(model).items()})
            latest.clear()
    if FLAGS.do_train:
        train_path = squad_file(FLAGS.train_file, config, "train")
        train_examples = first(read_squad_examples(train_path, v2), config.max_train_examples)
        train_features = create_squad_features(
            train_examples, tokenizer, is_training=True,
            skip_windows_without_answer=FLAGS.skip_windows_without_answer, **window_flags)
        logging.info("%s: %d questions, %d windows", train_path, len(train_examples),
                     len(train_features))
        span_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        # The mean of the start and end cross-entropies, as in the original BERT recipe.
        run.compile(model, loss={"start_logits": span_loss, "end_logits": span_loss},
                    loss_weights={"start_logits": 0.5, "end_logits": 0.5},
                    num_train_examples=len(train_features))
        train_batches = squad_dataset(
            train_features, config.batch_size, shuffle=True, seed=config.seed,
            drop_remainder=len(train_features) >= config.batch_size)
        summary = run.fit(model, train_batches,
                          evaluate=evaluate if FLAGS.do_predict else None, verbose=2)
        results.update(train_file=train_path, num_train_examples=len(train_examples),
                       num_train_features=len(train_features), **summary)
        history = summary["eval_history"]
        if history and summary.get("best_step") not in (None, history[-1]["step"]):
            latest.clear()  # Early stopping restored earlier weights: predict with them.
        if FLAGS.save_model and run.chief:
            results["model"] = os.path.join(run.output_dir, "model.keras")
            model.save(results["model"])
            copy_vocabulary(run.vocabulary_path(), run.output_dir)
    if FLAGS.do_predict:
        if "predictions" not in latest:
            predict(model)
        predictions = latest["predictions"]
        scores = evaluate_squad(
            articles, predictions.predictions,
            no_answer_probabilities=predictions.null_odds if v2 else None,
            no_answer_threshold=FLAGS.null_score_diff_threshold)
        results.update(scores)
        if run.chief:
            results["prediction_files"] = write_squad_predictions(run.output_dir, predictions)
    exported = run.export(model, run.preprocessor)
    if exported:
        results["export"] = exported
    run.write_results(results)


if __name__ == "__main__":
    app.run(main)
