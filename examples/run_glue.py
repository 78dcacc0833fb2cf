"""Fine-tunes BERT on a GLUE task and scores it with the task's official metrics.

The nine tasks and what results.json reports for them:

    cola  matthews_corrcoef          sst2  accuracy           mrpc  f1, accuracy
    qqp   f1, accuracy               stsb  pearson, spearman (a regression head)
    mnli  accuracy (matched) and accuracy_matched / accuracy_mismatched
    qnli  accuracy                   rte   accuracy           wnli  accuracy

Data comes from the TSV folders that GLUE's download_glue_data.py writes (--data_dir is
that root, e.g. glue_data/ holding SST-2/, MNLI/, ..., or one task's folder) or from
TensorFlow Datasets (--tfds_name=glue/sst2; needs `pip install tensorflow-datasets` and
network access on first use). Tokenization runs inside the tf.data graph. When the task's
test files are there (test.tsv; MNLI's test_matched.tsv and test_mismatched.tsv), the
predictions are written in the GLUE leaderboard's format to <output_dir>/predictions/
(SST-2.tsv, MNLI-m.tsv, MNLI-mm.tsv, ...: `index<TAB>prediction`).

    # SST-2 from a local Hugging Face or Google BERT folder (it holds vocab.txt):
    python examples/run_glue.py --task=sst2 --data_dir=glue_data \\
        --init_checkpoint=/path/to/bert --output_dir=runs/sst2
    # STS-B (regression), shorter sequences, a fixed number of steps:
    python examples/run_glue.py --task=stsb --data_dir=glue_data \\
        --init_checkpoint=/path/to/bert --max_seq_length=64 --num_train_steps=2000 \\
        --output_dir=runs/stsb
    # MNLI, evaluated on dev_matched and dev_mismatched every 2000 steps, with early
    # stopping, bfloat16, and a TF Serving export that takes raw (text, text_pair) strings:
    python examples/run_glue.py --task=mnli --data_dir=glue_data \\
        --init_checkpoint=/path/to/bert --steps_per_checkpoint=1000 --eval_every=2000 \\
        --early_stopping_patience=3 --mixed_precision=bfloat16 \\
        --export_dir=exported/mnli --output_dir=runs/mnli
    # RTE from TensorFlow Datasets:
    python examples/run_glue.py --tfds_name=glue/rte --init_checkpoint=/path/to/bert

A killed run restarted with the same flags resumes from its last checkpoint
(--steps_per_checkpoint). The fine-tuned model is saved as <output_dir>/model.keras, which
--init_checkpoint also takes (with --num_train_steps small, to re-score or re-predict).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
from absl import app, flags, logging

from keras_llm.data.glue import (
    GLUE_TASK_NAMES,
    GlueExamples,
    GlueTask,
    available_test_splits,
    evaluate_predictions,
    get_task,
    load_tfds,
    make_dataset,
    predictions_from_outputs,
    read_glue_split,
    write_submission,
)
from keras_llm.models import BertClassifier
from keras_llm.training import finetuning

SHARED_GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"

finetuning.define_flags(
    default_task="sst2",
    task_names=GLUE_TASK_NAMES,
    data_dir=str(SHARED_GLUE) if SHARED_GLUE.is_dir() else None,
    output_dir="runs/glue",
    max_seq_length=128,
    batch_size=32,
    learning_rate=2e-5,
    num_train_epochs=3.0,
)
flags.DEFINE_bool("predict", True,
                  "Write GLUE submission files for the test split(s) found beside the training "
                  "data (or TFDS's test splits) into <output_dir>/predictions.")
flags.DEFINE_bool("save_model", True, "Save the fine-tuned model as <output_dir>/model.keras.")
flags.adopt_module_key_flags(finetuning)  # --help lists the shared flags too.
FLAGS = flags.FLAGS


def resolve_task(config: finetuning.FinetuningConfig) -> GlueTask:
    """The task from --tfds_name when given (it must agree with an explicit --task)."""
    if not config.tfds_name:
        return get_task(config.task)
    task = get_task(config.tfds_name)
    if FLAGS["task"].present and get_task(config.task) != task:
        raise app.UsageError(f"--task={config.task} and --tfds_name={config.tfds_name} name "
                             "different tasks; pass one of them.")
    return task


def load_split(config: finetuning.FinetuningConfig, task: GlueTask, split: str) -> GlueExamples:
    if config.tfds_name:
        # --data_dir is TFDS's own folder only when given explicitly.
        return load_tfds(config.tfds_name, split,
                         data_dir=config.data_dir if FLAGS["data_dir"].present else None)
    if not config.data_dir:
        raise app.UsageError("Pass --data_dir (a GLUE folder as download_glue_data.py writes "
                             "it) or --tfds_name=glue/<task>.")
    return read_glue_split(config.data_dir, task, split)


def test_splits(config: finetuning.FinetuningConfig, task: GlueTask) -> list[str]:
    if not FLAGS.predict:
        return []
    if config.tfds_name:
        return list(task.test_splits)
    return available_test_splits(config.data_dir, task)


def first(examples: GlueExamples, limit: int | None) -> GlueExamples:
    return examples.select(range(limit)) if limit and limit < len(examples) else examples


def metric_keys(task: GlueTask, split: str, name: str) -> list[str]:
    """results.json keys of one metric: `accuracy` for one dev split; for MNLI `accuracy`
    and `accuracy_matched` (dev_matched), `accuracy_mismatched` (dev_mismatched)."""
    if len(task.eval_splits) == 1:
        return [name]
    keys = [f"{name}_{split.removeprefix('dev_')}"]
    return [name, *keys] if split == task.eval_splits[0] else keys


def predict(model: keras.Model, task: GlueTask, dataset) -> np.ndarray:
    return predictions_from_outputs(task, model.predict(dataset, verbose=0))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:  # The settings are checked together, before anything loads.
        config = finetuning.FinetuningConfig.from_flags()
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    task = resolve_task(config)
    train = first(load_split(config, task, "train"), config.max_train_examples)
    evals = {split: first(load_split(config, task, split), config.max_eval_examples)
             for split in task.eval_splits}
    tests = {split: load_split(config, task, split) for split in test_splits(config, task)}
    logging.info("GLUE %s: %d training examples; %s", task.name, len(train),
                 ", ".join(f"{s}: {len(e)}" for s, e in {**evals, **tests}.items()))

    run = finetuning.FinetuningRun(config, primary_metric=task.metrics[0])
    preprocessor = run.load_preprocessor()
    model = run.load_model(
        BertClassifier, num_classes=task.num_classes,
        label_names=list(task.label_names) if task.label_names else None)
    if model.num_classes != task.num_classes:
        raise ValueError(f"{config.init_checkpoint} has {model.num_classes} outputs; GLUE "
                         f"{task.name} needs {task.num_classes}.")
    if task.is_regression:
        loss, metrics = keras.losses.MeanSquaredError(), None
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = ["accuracy"]
    run.compile(model, loss=loss, metrics=metrics, num_train_examples=len(train))

    train_batches = make_dataset(train, preprocessor, config.batch_size, shuffle=True,
                                 seed=config.seed, drop_remainder=True)
    eval_batches = {split: make_dataset(examples, preprocessor, config.eval_batch_size,
                                        with_labels=False).cache()
                    for split, examples in evals.items()}

    def evaluate(model: keras.Model) -> dict[str, float]:
        scores = {}
        for split, examples in evals.items():
            predictions = predict(model, task, eval_batches[split])
            for name, value in evaluate_predictions(task, examples.labels, predictions).items():
                scores.update(dict.fromkeys(metric_keys(task, split, name), value))
        return scores

    summary = run.fit(model, train_batches, evaluate=evaluate, verbose=2)
    history = summary["eval_history"]
    final = next((h for h in history if h["step"] == summary["best_step"]), history[-1])
    results = {
        "task": task.name,
        "data": train.source,
        **{k: v for k, v in final.items() if k != "step"},
        "eval_step": final["step"],
        "num_train_examples": len(train),
        "num_eval_examples": {split: len(examples) for split, examples in evals.items()},
        **summary,
    }
    if tests and run.chief:
        folder = Path(run.output_dir) / "predictions"
        results["predictions"] = [
            str(write_submission(folder, examples, predict(
                model, task, make_dataset(examples, preprocessor, config.eval_batch_size,
                                          with_labels=False))))
            for examples in tests.values()
        ]
    if FLAGS.save_model and run.chief:
        results["model"] = os.path.join(run.output_dir, "model.keras")
        model.save(results["model"])
    exported = run.export(model, preprocessor, pair=task.is_pair)
    if exported:
        results["export"] = exported
    run.write_results(results)


if __name__ == "__main__":
    app.run(main)
