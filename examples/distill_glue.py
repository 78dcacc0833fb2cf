"""Distils a fine-tuned BERT teacher into a smaller student on a GLUE task, and shows the cost.

Three models, trained on the same data with the same number of steps, end in one table
(printed and in <output_dir>/results.json): the teacher, the student distilled from it, and
the same student trained on the labels alone. For each: the dev metric, the parameter count,
the size on disk and the CPU latency (p50) of its exported raw-string SavedModel at batch 1
and 32; with --quantize=int8, also the distilled student after Keras' int8 quantization.

    # MiniLM fine-tuned on SST-2 first (--teacher is a pretrained folder), then distilled into
    # a random 4-layer bert_mini (the README's figures; 35 min on 2 CPU cores):
    python examples/distill_glue.py --task=sst2 --teacher=/path/to/minilm \\
        --teacher_steps=1000 --teacher_learning_rate=5e-5 --student=bert_mini \\
        --learning_rate=2e-4 --num_train_steps=600 --max_seq_length=48 --quantize=int8 \\
        --output_dir=runs/distill_sst2
    # A 2-layer student made of the teacher's layers 3 and 6 (DistilBERT-style):
    python examples/distill_glue.py --task=sst2 --teacher=/path/to/minilm \\
        --student=every_3rd_layer --output_dir=runs/distill_copy
    # A teacher fine-tuned already (run_glue.py's model.keras) into a copy of every other
    # layer, with TinyBERT's intermediate terms too:
    python examples/distill_glue.py --task=sst2 --teacher=runs/sst2/model.keras \\
        --student=every_other_layer --intermediate_loss --output_dir=runs/distill_half

The student is a size preset (random weights, the teacher's vocabulary) or
`every_<k>_layer` / `every_other_layer` (a copy of every k-th teacher layer, when the widths
match). Loss: alpha x cross-entropy on the labels + (1 - alpha) x T^2 x KL(teacher/T ||
student/T) (for STS-B, the MSE to the teacher's score); --intermediate_loss adds TinyBERT's
hidden-state and attention-map MSEs over a uniform layer map (weight 1 each, from the first
step; with a random student at a high learning rate they can swamp the label loss, which
TinyBERT avoids by distilling the intermediate layers in a stage of their own). The training
flags are those of run_glue.py (--strategy, --mixed_precision, --steps_per_checkpoint with
resume, ...).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from keras_llm.data.glue import (
    GLUE_TASK_NAMES,
    evaluate_predictions,
    get_task,
    make_dataset,
    predictions_from_outputs,
    read_glue_split,
)
from keras_llm.export import export_saved_model
from keras_llm.models import BertClassifier
from keras_llm.training import finetuning
from keras_llm.training.distillation import Distiller, student_from_preset, student_from_teacher

SHARED_GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"

finetuning.define_flags(
    default_task="sst2", task_names=GLUE_TASK_NAMES,
    data_dir=str(SHARED_GLUE) if SHARED_GLUE.is_dir() else None,
    output_dir="runs/distill", max_seq_length=64, batch_size=32, learning_rate=5e-5,
    num_train_epochs=1.0)
flags.DEFINE_string("teacher", None,
                    "A fine-tuned BertClassifier (.keras) or a pretrained BERT folder / preset, "
                    "which is first fine-tuned for --teacher_steps.", required=True)
flags.DEFINE_integer("teacher_steps", 600, "Fine-tuning steps for a pretrained --teacher.")
flags.DEFINE_float("teacher_learning_rate", None,
                   "Peak learning rate for fine-tuning a pretrained --teacher (default: "
                   "--learning_rate; a random student usually wants a higher one than the "
                   "pretrained teacher).")
flags.DEFINE_string("student", "every_other_layer",
                    "A Bert preset (bert_tiny, bert_mini, ...) or every_other_layer / "
                    "every_<k>_layer (a copy of every k-th teacher layer).")
flags.DEFINE_float("temperature", 2.0, "Softmax temperature T of the soft targets (> 0).")
flags.DEFINE_float("alpha", 0.5, "Weight of the hard-label loss, in [0, 1].")
flags.DEFINE_bool("intermediate_loss", False,
                  "Add TinyBERT's hidden-state and attention-map MSE terms.")
flags.DEFINE_enum("quantize", None, ["int8"], "Also quantize the distilled student.")
flags.DEFINE_integer("latency_repeats", 20, "Timed calls per batch size.")
flags.adopt_module_key_flags(finetuning)
FLAGS = flags.FLAGS


def student_spec(name: str) -> tuple[str, int | None]:
    """("preset", None) or ("copy", k) from --student."""
    if name == "every_other_layer":
        return "copy", 2
    match = re.fullmatch(r"every_(\d+)(?:st|nd|rd|th)?_layer", name)
    if match:
        return "copy", int(match.group(1))
    return "preset", None


def check_flags() -> None:
    """Bad settings fail here, before any training."""
    if not FLAGS.temperature > 0:
        raise app.UsageError(f"--temperature must be > 0; got {FLAGS.temperature}.")
    if not 0 <= FLAGS.alpha <= 1:
        raise app.UsageError(f"--alpha must be in [0, 1]; got {FLAGS.alpha}.")
    if FLAGS.teacher_learning_rate is not None and not FLAGS.teacher_learning_rate > 0:
        raise app.UsageError(
            f"--teacher_learning_rate must be > 0; got {FLAGS.teacher_learning_rate}.")
    kind, every = student_spec(FLAGS.student)
    if kind == "copy" and every < 1:
        raise app.UsageError(f"--student={FLAGS.student}: k must be at least 1.")
    if kind == "preset":
        from keras_llm.models import list_presets

        if FLAGS.student not in list_presets("Bert"):
            raise app.UsageError(f"--student={FLAGS.student!r} is neither a Bert preset "
                                 f"({', '.join(list_presets('Bert'))}) nor every_<k>_layer.")


class Stage:
    """One training stage: its own output folder (checkpoints, resume) under --output_dir."""

    def __init__(self, name: str, shared: Stage | None = None, **overrides):
        config = finetuning.FinetuningConfig.from_flags(
            output_dir=os.path.join(FLAGS.output_dir, name), export_dir=None, **overrides)
        self.name = name
        self.task = get_task(config.task)
        self.run = finetuning.FinetuningRun(config, primary_metric=self.task.metrics[0])
        if shared is not None:  # One strategy and tokenizer for the teacher and its students.
            self.run.strategy, self.run.num_replicas = shared.run.strategy, shared.run.num_replicas
            self.run.preprocessor = shared.run.preprocessor

    def train(self, model, train, evaluate, loss=None, metrics=None) -> dict:
        self.run.compile(model, loss=loss, metrics=metrics, num_train_examples=len(train))
        batches = make_dataset(train, self.run.preprocessor, self.run.config.batch_size,
                               shuffle=True, seed=self.run.config.seed, drop_remainder=True)
        return self.run.fit(model, batches, evaluate=evaluate, verbose=2)


def hard_label_loss(task):
    if task.is_regression:
        return keras.losses.MeanSquaredError(), None
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"]


def measure(name: str, model: BertClassifier, preprocessor, task, dev, texts) -> dict:
    """Dev metric, parameters, SavedModel size and p50 latency at batch 1 and 32."""
    scores = score(model, task, dev, preprocessor)
    folder = os.path.join(FLAGS.output_dir, "exported", name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)  # Re-measured on a restart: the models may have changed.
    version_dir = export_saved_model(model, folder, preprocessor=preprocessor,
                                     pair=task.is_pair, signatures=("text",))
    size = sum(f.stat().st_size for f in Path(version_dir).rglob("*") if f.is_file())
    serve = tf.saved_model.load(version_dir).signatures["serving_default"]
    latency = {}
    for batch in (1, 32):
        rows = [texts[i % len(texts)] for i in range(batch)]
        columns = ({"text": tf.constant([r[0] for r in rows])} if not task.is_pair else
                   {"text": tf.constant([r[0] for r in rows]),
                    "text_pair": tf.constant([r[1] for r in rows])})
        serve(**columns)  # Warm up.
        times = []
        for _ in range(FLAGS.latency_repeats):
            start = time.perf_counter()
            serve(**columns)
            times.append(time.perf_counter() - start)
        latency[f"latency_ms_batch{batch}"] = round(1000 * float(np.median(times)), 2)
    return {"model": name, **scores, "parameters": int(model.count_params()),
            "saved_model_mb": round(size / 2**20, 2), **latency, "saved_model": version_dir}


def score(model: BertClassifier, task, dev, preprocessor) -> dict:
    batches = make_dataset(dev, preprocessor, FLAGS.eval_batch_size, with_labels=False)
    predictions = predictions_from_outputs(task, model.predict(batches, verbose=0))
    return evaluate_predictions(task, dev.labels, predictions)


def load_teacher(stage: Stage, train, evaluate) -> tuple[BertClassifier, dict]:
    """A fine-tuned teacher as is, or a pretrained checkpoint fine-tuned here first."""
    task, run = stage.task, stage.run
    run.load_preprocessor()
    teacher = run.load_model(BertClassifier, num_classes=task.num_classes)
    if teacher.num_classes != task.num_classes:
        raise ValueError(f"--teacher has {teacher.num_classes} outputs; GLUE {task.name} "
                         f"needs {task.num_classes}.")
    if FLAGS.teacher.endswith(".keras"):
        return teacher, {}
    loss, metrics = hard_label_loss(task)
    return teacher, stage.train(teacher, train, evaluate, loss=loss, metrics=metrics)


def make_student(run: finetuning.FinetuningRun, teacher: BertClassifier) -> BertClassifier:
    kind, every = student_spec(FLAGS.student)
    with run.scope():
        if kind == "copy":
            return student_from_teacher(teacher, every=every)
        return student_from_preset(FLAGS.student, teacher)


def main(argv):
    del argv
    check_flags()
    task = get_task(FLAGS.task)
    if not FLAGS.data_dir:
        raise app.UsageError("Pass --data_dir: a GLUE folder as download_glue_data.py writes it.")
    train = read_glue_split(FLAGS.data_dir, task, "train")
    if FLAGS.max_train_examples:
        train = train.select(range(min(FLAGS.max_train_examples, len(train))))
    dev = read_glue_split(FLAGS.data_dir, task, task.eval_splits[0])
    if FLAGS.max_eval_examples:
        dev = dev.select(range(min(FLAGS.max_eval_examples, len(dev))))

    # 1. The teacher (fine-tuned here when --teacher is a pretrained checkpoint).
    teacher_stage = Stage("teacher", init_checkpoint=FLAGS.teacher,
                          num_train_steps=FLAGS.teacher_steps,
                          learning_rate=FLAGS.teacher_learning_rate or FLAGS.learning_rate)
    preprocessor = teacher_stage.run.load_preprocessor()

    def evaluate(model):
        return score(model.student if isinstance(model, Distiller) else model, task, dev,
                     preprocessor)

    teacher, teacher_summary = load_teacher(teacher_stage, train, evaluate)
    teacher.trainable = False

    # 2. The student distilled from the teacher, and 3. the same student on labels alone.
    distill_stage = Stage("student_distilled", teacher_stage, init_checkpoint=FLAGS.teacher)
    keras.utils.set_random_seed(FLAGS.seed)
    student = make_student(distill_stage.run, teacher)
    with distill_stage.run.scope():
        weight = 1.0 if FLAGS.intermediate_loss else 0.0
        distiller = Distiller(teacher, student, temperature=FLAGS.temperature, alpha=FLAGS.alpha,
                              hidden_weight=weight, attention_weight=weight)
    if distill_stage.run.strategy is not None:
        finetuning.build_from_first_replica(distiller)
    distill_summary = distill_stage.train(distiller, train, evaluate)

    plain_stage = Stage("student_plain", teacher_stage, init_checkpoint=FLAGS.teacher)
    keras.utils.set_random_seed(FLAGS.seed)  # The same initial student as the distilled one.
    plain = make_student(plain_stage.run, teacher)
    if plain_stage.run.strategy is not None:
        finetuning.build_from_first_replica(plain)
    loss, metrics = hard_label_loss(task)
    plain_summary = plain_stage.train(plain, train, evaluate, loss=loss, metrics=metrics)

    texts = list(zip(dev.text_a, dev.text_b or dev.text_a, strict=True))
    rows = [measure("teacher", teacher, preprocessor, task, dev, texts),
            measure("student_distilled", student, preprocessor, task, dev, texts),
            measure("student_plain", plain, preprocessor, task, dev, texts)]
    if FLAGS.quantize:
        student.quantize(FLAGS.quantize)
        rows.append(measure(f"student_distilled_{FLAGS.quantize}", student, preprocessor, task,
                            dev, texts))
    student.save(os.path.join(FLAGS.output_dir, "student.keras"))

    metric = task.metrics[0]
    header = f"{'model':<26}{metric:>18}{'params':>12}{'MB':>9}{'ms@1':>9}{'ms@32':>9}"
    lines = [header, "-" * len(header)] + [
        f"{r['model']:<26}{r[metric]:>18.4f}{r['parameters']:>12,}{r['saved_model_mb']:>9.1f}"
        f"{r['latency_ms_batch1']:>9.1f}{r['latency_ms_batch32']:>9.1f}" for r in rows]
    results = {
        "task": task.name, "metric": metric, "table": rows,
        "distilled_beats_plain": rows[1][metric] > rows[2][metric],
        "temperature": FLAGS.temperature, "alpha": FLAGS.alpha,
        "intermediate_loss": FLAGS.intermediate_loss, "student": FLAGS.student,
        "teacher_training": teacher_summary, "distillation": distill_summary,
        "plain_training": plain_summary,
    }
    if FLAGS.export_dir:
        results["export"] = export_saved_model(student, FLAGS.export_dir,
                                               preprocessor=preprocessor, pair=task.is_pair)
    with open(os.path.join(FLAGS.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
