"""Fine-tunes BERT for named-entity recognition on CoNLL-2003 and scores whole entities.

The data is CoNLL's column format (the word first, the NER tag last, blank lines between
sentences, `-DOCSTART-` between documents); the English files tag in IOB1 and are read as
IOB2. The tag set comes from the training file ("O", then B-/I- for each type). Words are
split into word pieces inside the tf.data graph; each word's label sits on its first piece
and the other pieces, [CLS], [SEP] and padding are ignored by the loss. Predictions are read
back at each word's first piece and scored like seqeval/conlleval: an entity counts only
when its type and both boundaries are right. results.json holds the dev (eng.testa)
`precision`, `recall`, `f1`, `accuracy` and `per_type`, and the same for the test file
(eng.testb) as `test_precision`, `test_recall`, `test_f1`, `test_accuracy`, `test_per_type`.

    # CoNLL-2003 English from a local Hugging Face or Google BERT folder (with vocab.txt):
    python examples/run_ner.py --data_dir=conll2003 --init_checkpoint=/path/to/bert \\
        --output_dir=runs/ner
    # Shorter sequences, dev F1 every 500 steps with early stopping, a TF Serving export
    # that takes raw sentences:
    python examples/run_ner.py --init_checkpoint=/path/to/bert --max_seq_length=64 \\
        --steps_per_checkpoint=500 --eval_every=500 --early_stopping_patience=2 \\
        --export_dir=exported/ner --output_dir=runs/ner

--data_dir defaults to the checkout's ../shared/data/conll2003 when it exists. Words
cut by --max_seq_length are predicted "O" (and counted in results.json as
`dev_words_cut` / `test_words_cut`), so the scores are over every gold entity. A killed run
restarted with the same flags resumes from its last checkpoint. The test predictions are
written in conlleval's format (`word gold predicted`) to <output_dir>/predictions/, and the
fine-tuned model to <output_dir>/model.keras.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras
from absl import app, flags, logging

from keras_llm.data.conll import (
    IGNORE_LABEL,
    conll_dataset,
    label_names_from_tags,
    predict_word_tags,
    read_conll,
)
from keras_llm.metrics.sequence_labeling import entity_scores
from keras_llm.models import BertTokenClassifier
from keras_llm.training import finetuning

SHARED_CONLL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll2003"

finetuning.define_flags(
    default_task="conll2003",
    task_names=["conll2003"],
    data_dir=str(SHARED_CONLL) if SHARED_CONLL.is_dir() else None,
    output_dir="runs/ner",
    max_seq_length=128,
    batch_size=32,
    learning_rate=5e-5,
    num_train_epochs=3.0,
)
flags.DEFINE_string("train_file", "eng.train", "Training file (in --data_dir unless absolute).")
flags.DEFINE_string("dev_file", "eng.testa", "Dev file: evaluated during and after training.")
flags.DEFINE_string("test_file", "eng.testb", "Test file, scored once at the end; '' skips it.")
flags.DEFINE_bool("iob1", True, "The files tag in IOB1 (CoNLL-2003) and are converted to IOB2; "
                  "harmless on IOB2 files.")
flags.DEFINE_integer("pad_to_multiple_of", 32,
                     "Pad each batch only to its longest sentence, rounded up to a multiple of "
                     "this (far less compute on short sentences; a few shapes); 0 pads every "
                     "batch to --max_seq_length.")
flags.DEFINE_bool("write_predictions", True,
                  "Write the test predictions as `word gold predicted` lines (conlleval's "
                  "input) to <output_dir>/predictions/.")
flags.DEFINE_bool("save_model", True, "Save the fine-tuned model as <output_dir>/model.keras.")
flags.adopt_module_key_flags(finetuning)  # --help lists the shared flags too.
FLAGS = flags.FLAGS


def data_path(config: finetuning.FinetuningConfig, name: str) -> str:
    if os.path.isabs(name):
        return name
    if not config.data_dir:
        raise app.UsageError("Pass --data_dir: a folder with the CoNLL files "
                             f"({FLAGS.train_file}, {FLAGS.dev_file}, {FLAGS.test_file}).")
    return os.path.join(config.data_dir, name)


def first(rows: list, limit: int | None) -> list:
    return rows[:limit] if limit else rows


def flat_scores(scores: dict, prefix: str = "") -> dict:
    """entity_scores' dict with a key prefix (per_type stays a nested dict)."""
    return {f"{prefix}{key}": value for key, value in scores.items()}


def write_predictions(path: Path, sentences: Sequence[Sequence[str]],
                      gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for words, gold_tags, predicted_tags in zip(sentences, gold, predicted, strict=True):
            for row in zip(words, gold_tags, predicted_tags, strict=True):
                f.write(" ".join(row) + "\n")
            f.write("\n")
    return str(path)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config = finetuning.FinetuningConfig.from_flags()
    train_path = data_path(config, FLAGS.train_file)
    train_words, train_tags = read_conll(train_path, iob1=FLAGS.iob1)
    label_names = label_names_from_tags(train_tags)
    splits = {"dev": FLAGS.dev_file} | ({"test": FLAGS.test_file} if FLAGS.test_file else {})
    evals = {}
    for split, name in splits.items():
        words, tags = read_conll(data_path(config, name), label_names, iob1=FLAGS.iob1)
        evals[split] = (first(words, config.max_eval_examples),
                        first(tags, config.max_eval_examples))
    train_words = first(train_words, config.max_train_examples)
    train_tags = first(train_tags, config.max_train_examples)
    logging.info("CoNLL %s: %d training sentences; %s; labels %s", config.data_dir,
                 len(train_words), ", ".join(f"{s}: {len(e[0])}" for s, e in evals.items()),
                 label_names)

    run = finetuning.FinetuningRun(config, primary_metric="f1")
    preprocessor = run.load_preprocessor()
    model = run.load_model(BertTokenClassifier, num_classes=len(label_names),
                           label_names=label_names)
    if model.label_names is not None and list(model.label_names) != label_names:
        raise ValueError(f"{config.init_checkpoint} tags {model.label_names}, but the training "
                         f"file {train_path} gives {label_names}; start from a checkpoint "
                         "without a token-classification head, or train on the same tag set.")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                      ignore_class=IGNORE_LABEL)
    run.compile(model, loss=loss, num_train_examples=len(train_words),
                weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    train_batches = conll_dataset(
        train_words, train_tags, preprocessor, label_names, config.batch_size, shuffle=True,
        seed=config.seed, drop_remainder=len(train_words) >= config.batch_size,
        pad_to_multiple_of=FLAGS.pad_to_multiple_of or None)

    words_cut = {}  # Words without a piece within max_seq_length, per split (tagged "O").
    def score(split: str, model: keras.Model) -> tuple[dict, list[list[str]]]:
        words, gold = evals[split]
        predicted, words_cut[split] = predict_word_tags(
            model, words, preprocessor, label_names, config.eval_batch_size,
            pad_to_multiple_of=FLAGS.pad_to_multiple_of or None)
        return entity_scores(gold, predicted), predicted

    def evaluate(model: keras.Model) -> dict:
        return score("dev", model)[0]

    summary = run.fit(model, train_batches, evaluate=evaluate, verbose=2)
    history = summary["eval_history"]
    final = next((h for h in history if h["step"] == summary["best_step"]), history[-1])
    results = {
        "task": "conll2003",
        "data": config.data_dir,
        "label_names": label_names,
        **{k: v for k, v in final.items() if k != "step"},
        "eval_step": final["step"],
        "num_train_examples": len(train_words),
        "num_eval_examples": {split: len(e[0]) for split, e in evals.items()},
    }
    if "test" in evals:
        test_scores, test_predictions = score("test", model)
        results.update(flat_scores(test_scores, "test_"))
        if FLAGS.write_predictions and run.chief:
            results["predictions"] = write_predictions(
                Path(run.output_dir) / "predictions" / f"{Path(FLAGS.test_file).name}.txt",
                evals["test"][0], evals["test"][1], test_predictions)
    results.update({f"{split}_words_cut": count for split, count in words_cut.items()})
    results.update(summary)
    if FLAGS.save_model and run.chief:
        results["model"] = os.path.join(run.output_dir, "model.keras")
        model.save(results["model"])
    exported = run.export(model, preprocessor)
    if exported:
        results["export"] = exported
    logging.info("dev f1 %.4f%s", results["f1"],
                 f", test f1 {results['test_f1']:.4f}" if "test_f1" in results else "")
    run.write_results(results)


if __name__ == "__main__":
    app.run(main)
