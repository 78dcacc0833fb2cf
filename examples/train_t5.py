"""Fine-tunes T5 on (input, target) text pairs, or pretrains it with span corruption.

    # GLUE SST-2 as text-to-text ("sst2 sentence: ..." -> "positive"/"negative"):
    python examples/train_t5.py --task=sst2 --output_dir=runs/t5_sst2
    # Your own pairs (TSV with an input<TAB>target header, or JSONL {"input", "target"}):
    python examples/train_t5.py --task=pairs --train_file=train.tsv \
        --validation_file=dev.tsv --init_checkpoint=/path/to/hf-t5 --output_dir=runs/t5
    # Span-corruption pretraining on a plain-text file:
    python examples/train_t5.py --task=span_corruption --train_file=corpus.txt --output_dir=runs/pt

Without `--init_checkpoint` (an HF T5 folder, which brings its `spiece.model`) the
model starts from scratch and a SentencePiece vocabulary is trained on the training
text. AdamW with warmup and linear decay, mixed precision, a strategy flag, and
checkpoints every `--steps_per_checkpoint` steps from which a killed run resumes.
The validation split is scored with exact match, ROUGE-L and BLEU on generated
text (and token loss for span corruption); a few samples are printed; everything
lands in `results.json`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

import keras_llm
from keras_llm.data import (
    read_text_file,
    read_text_pairs,
    span_corruption_dataset,
    sst2_as_text_to_text,
)
from keras_llm.data.glue import task_folder
from keras_llm.metrics import bleu, exact_match, rouge_l
from keras_llm.training import (
    STRATEGIES,
    LearningRateLogger,
    WarmupDecay,
    create_adamw,
    distribution_scope,
    fit_resumable,
    resumable,
    set_mixed_precision,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

flags.DEFINE_enum("task", "sst2", ["sst2", "pairs", "span_corruption"], "What to train on.")
flags.DEFINE_string("data_dir", str(SHARED_DATA / "glue" / "SST-2"),
                    "--task=sst2: the GLUE root (holding SST-2/) or the SST-2 folder itself.")
flags.DEFINE_string("train_file", None, "Pairs (.tsv/.jsonl) or plain text (span corruption).")
flags.DEFINE_string("validation_file", None, "Validation pairs; else a split of the training set.")
flags.DEFINE_integer("max_train_examples", 0, "Use at most this many training pairs (0: all).")
flags.DEFINE_string("init_checkpoint", None, "A local Hugging Face T5 folder to start from.")
flags.DEFINE_integer("vocab_size", 4000, "SentencePiece pieces when training a vocabulary.")
flags.DEFINE_integer("num_layers", 2, "Encoder and decoder blocks (from scratch).")
flags.DEFINE_integer("num_heads", 4, "Attention heads.")
flags.DEFINE_integer("hidden_size", 128, "d_model.")
flags.DEFINE_integer("intermediate_size", 512, "d_ff.")
flags.DEFINE_enum("feed_forward", "relu", ["relu", "gated-gelu"],
                  "T5 v1.0 (ReLU, tied embeddings) or v1.1 (gated GELU, separate head); from "
                  "scratch on small data v1.0 learns faster here.")
flags.DEFINE_float("dropout", 0.1, "Dropout rate.")
flags.DEFINE_integer("max_input_length", 64, "Encoder tokens (longer inputs are truncated).")
flags.DEFINE_integer("max_target_length", 8, "Decoder tokens (longer targets are truncated).")
flags.DEFINE_integer("batch_size", 32, "Global batch size.")
flags.DEFINE_integer("train_steps", 1500, "Optimizer steps in all.")
flags.DEFINE_integer("steps_per_checkpoint", 250,
                     "Checkpoint and validate this often; must divide --train_steps.")
flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate.")
flags.DEFINE_float("warmup_ratio", 0.1, "Fraction of steps spent warming up.")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "bfloat16", "float16"], "Precision.")
flags.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                  "Distribution strategy; model_parallel (JAX) splits each block's kernels "
                  "over --model_parallelism devices.")
flags.DEFINE_integer("model_parallelism", None,
                     "--strategy=model_parallel: devices each model is split over "
                     "(default all); the rest hold data-parallel replicas.")
flags.DEFINE_integer("eval_examples", 400, "Validation examples to generate for (0: all).")
flags.DEFINE_integer("export_max_new_tokens", 64, "The exported model's generation cap.")
flags.DEFINE_string("export_dir", None,
                    "If set, also export a TF Serving SavedModel (strings in, text out) here.")
flags.DEFINE_string("output_dir", "runs/train_t5", "Checkpoints, logs and results.")
flags.DEFINE_integer("seed", 0, "Random seed.")
FLAGS = flags.FLAGS
resumable.validate_step_flags("train_steps")



def sst2_files() -> tuple[Path, Path]:
    """SST-2's train.tsv and dev.tsv under --data_dir: a GLUE root (as run_glue.py takes it,
    holding SST-2/) or the SST-2 folder itself."""
    if not FLAGS.data_dir:
        raise app.UsageError("--task=sst2 needs --data_dir: the GLUE root (holding SST-2/) or "
                             "the SST-2 folder.")
    data_dir = Path(FLAGS.data_dir)
    if not data_dir.is_dir():
        raise app.UsageError(f"--data_dir={FLAGS.data_dir} does not exist; pass the GLUE root "
                             "(holding SST-2/) or the SST-2 folder.")
    folder = task_folder(data_dir, "sst2")
    files = (folder / "train.tsv", folder / "dev.tsv")
    missing = [path for path in files if not path.is_file()]
    if missing:
        # task_folder tries <data_dir>/SST-2 first, and <data_dir> when that is no folder.
        tried = [str(data_dir / folder_name / path.name) for path in missing
                 for folder_name in (("SST-2",) if folder != data_dir else ("SST-2", ""))]
        raise app.UsageError(
            f"--data_dir={FLAGS.data_dir} holds no SST-2 {' or '.join(p.name for p in missing)} "
            f"(looked for {', '.join(tried)}). Pass the GLUE root that holds SST-2/ or the "
            "SST-2 folder itself (with train.tsv and dev.tsv).")
    return files


def load_pairs():
    """Training and validation (input, target) string pairs for the pair tasks."""
    if FLAGS.task == "sst2":
        train_file, dev_file = sst2_files()
        train = sst2_as_text_to_text(train_file)
        validation = sst2_as_text_to_text(dev_file)
    else:
        if not FLAGS.train_file:
            raise app.UsageError("--task=pairs needs --train_file.")
        train = read_text_pairs(FLAGS.train_file)
        if FLAGS.validation_file:
            validation = read_text_pairs(FLAGS.validation_file)
        else:
            cut = int(0.9 * len(train[0]))
            train, validation = (train[0][:cut], train[1][:cut]), (train[0][cut:], train[1][cut:])
    order = np.random.default_rng(FLAGS.seed).permutation(len(train[0]))
    if FLAGS.max_train_examples:
        order = order[: FLAGS.max_train_examples]
    train = ([train[0][i] for i in order], [train[1][i] for i in order])
    return train, validation


def make_tokenizer(training_text: list[str]):
    if FLAGS.init_checkpoint:
        return keras_llm.tokenizers.SentencePieceTokenizer.from_pretrained(
            FLAGS.init_checkpoint, add_end_token=True)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    prefix = os.path.join(FLAGS.output_dir, "spiece")
    if not os.path.exists(prefix + ".model"):  # A resumed run keeps its vocabulary.
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(training_text))
        # A soft limit: a small corpus may support fewer pieces than asked for.
        keras_llm.tokenizers.train_sentence_piece(f.name, prefix, vocab_size=FLAGS.vocab_size,
                                                  extra_ids=100, hard_vocab_limit=False)
        os.remove(f.name)
    return keras_llm.tokenizers.SentencePieceTokenizer(prefix + ".model", add_end_token=True,
                                                       extra_ids=100)


def to_model_inputs(inputs, targets, pad_id: int):
    """Padded encoder inputs, shifted decoder inputs, labels and the label mask."""
    encoder = inputs.to_tensor(pad_id, shape=[None, FLAGS.max_input_length])
    labels = targets.to_tensor(pad_id, shape=[None, FLAGS.max_target_length])
    label_mask = tf.cast(targets.to_tensor(-1, shape=[None, FLAGS.max_target_length]) >= 0,
                         tf.int32)
    x = {
        "encoder_token_ids": encoder,
        "encoder_padding_mask": tf.cast(
            inputs.to_tensor(-1, shape=[None, FLAGS.max_input_length]) >= 0, tf.int32),
        # Teacher forcing: the labels shifted right behind the start token (T5: the pad id).
        # TF ops, not `keras_llm.models.t5.shift_right`: this runs in tf.data on every backend.
        "decoder_token_ids": tf.pad(labels[:, :-1], [[0, 0], [1, 0]], constant_values=pad_id),
        "decoder_padding_mask": label_mask,
    }
    return x, labels


def pair_dataset(tokenizer, inputs, targets, shuffle: bool):
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if shuffle:
        dataset = dataset.shuffle(len(inputs), seed=FLAGS.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(FLAGS.batch_size, drop_remainder=shuffle)
    return dataset.map(lambda a, b: to_model_inputs(tokenizer(a), tokenizer(b), 0)).prefetch(2)


def span_corruption_datasets(tokenizer, text: str):
    """Blocks of the text's tokens corrupted T5-style, split 90/10."""
    lines = [line for line in text.splitlines() if line.strip()]
    ids = np.concatenate([np.asarray(r, "int32") for r in tokenizer(lines).to_list()])
    length = FLAGS.max_input_length
    blocks = ids[: len(ids) // length * length].reshape(-1, length)
    cut = int(0.9 * len(blocks))
    sentinels = tokenizer.sentinel_ids(100)

    def corrupted(block_array, shuffle):
        dataset = span_corruption_dataset(tf.data.Dataset.from_tensor_slices(block_array),
                                          sentinels, seed=FLAGS.seed, end_token_id=1)
        if shuffle:
            dataset = dataset.shuffle(len(block_array), seed=FLAGS.seed)
        dataset = dataset.map(lambda e: (e["inputs"], e["targets"]))
        dataset = dataset.ragged_batch(FLAGS.batch_size, drop_remainder=shuffle)
        return dataset.map(lambda a, b: to_model_inputs(a, b, 0)).prefetch(2)

    return corrupted(blocks[:cut], True), corrupted(blocks[cut:], False)


def make_model(tokenizer) -> keras_llm.models.T5Seq2SeqLM:
    if FLAGS.init_checkpoint:
        return keras_llm.models.T5Seq2SeqLM.from_pretrained(
            FLAGS.init_checkpoint, tokenizer=tokenizer, dropout=FLAGS.dropout)
    t5 = keras_llm.models.T5(
        vocab_size=tokenizer.vocabulary_size(),
        num_layers=FLAGS.num_layers,
        num_heads=FLAGS.num_heads,
        hidden_size=FLAGS.hidden_size,
        key_value_size=FLAGS.hidden_size // FLAGS.num_heads,
        intermediate_size=FLAGS.intermediate_size,
        feed_forward=FLAGS.feed_forward,
        tie_embeddings=FLAGS.feed_forward == "relu",
        dropout=FLAGS.dropout,
        max_sequence_length=max(FLAGS.max_input_length, 128),
    )
    return keras_llm.models.T5Seq2SeqLM(t5, tokenizer=tokenizer)


def evaluate_generation(model, inputs, targets) -> dict:
    """Generates for the validation inputs (truncated like training) and scores the text."""
    count = FLAGS.eval_examples or len(inputs)
    inputs, targets = inputs[:count], targets[:count]
    predictions = []
    for start in range(0, len(inputs), 64):
        rows = model.tokenizer(inputs[start : start + 64]).to_list()
        rows = [r[: FLAGS.max_input_length - 1] + [1] if len(r) > FLAGS.max_input_length else r
                for r in rows]
        # Whole batches of 64 keep one compiled shape; pad the last one.
        rows += [[1]] * (64 - len(rows))
        ids = model.generate(rows, max_new_tokens=FLAGS.max_target_length)
        for row in ids[: len(inputs) - start]:
            row = [int(t) for t in row]
            row = row[: row.index(1)] if 1 in row else row
            predictions.append(model.detokenize(row))
    for text, target, prediction in list(zip(inputs, targets, predictions, strict=True))[:5]:
        logging.info("input: %s\n  target: %s\n  prediction: %s", text, target, prediction)
    return {
        "exact_match": exact_match(predictions, targets),
        "rouge_l": rouge_l(predictions, targets),
        "bleu": bleu(predictions, targets),
        "samples": [{"input": i, "target": t, "prediction": p}
                    for i, t, p in list(zip(inputs, targets, predictions, strict=True))[:5]],
    }


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    set_mixed_precision(FLAGS.mixed_precision)
    os.makedirs(FLAGS.output_dir, exist_ok=True)

    if FLAGS.task == "span_corruption":
        if not FLAGS.train_file:
            raise app.UsageError("--task=span_corruption needs --train_file (plain text).")
        text = read_text_file(FLAGS.train_file)
        tokenizer = make_tokenizer(text.splitlines())
        train, validation = span_corruption_datasets(tokenizer, text)
        pairs = None
    else:
        (train_inputs, train_targets), pairs = load_pairs()
        tokenizer = make_tokenizer(train_inputs + train_targets)
        train = pair_dataset(tokenizer, train_inputs, train_targets, shuffle=True)
        validation = pair_dataset(tokenizer, pairs[0], pairs[1], shuffle=False)

    scope, replicas = distribution_scope(FLAGS.strategy, FLAGS.model_parallelism,
                                         layout="T5")
    with scope:
        model = make_model(tokenizer)
        model.build()
        schedule = WarmupDecay(FLAGS.learning_rate, FLAGS.train_steps,
                               int(FLAGS.warmup_ratio * FLAGS.train_steps))
        model.compile(optimizer=create_adamw(schedule, weight_decay=0.01))
    logging.info("%d parameters on %d replica(s)", model.count_params(), replicas)

    start = time.time()
    _, resumed_from = fit_resumable(
        model, train, FLAGS.train_steps, os.path.join(FLAGS.output_dir, "checkpoints"),
        FLAGS.steps_per_checkpoint, validation_data=validation,
        callbacks=[LearningRateLogger(),
                   keras.callbacks.TensorBoard(os.path.join(FLAGS.output_dir, "logs"))],
        verbose=2,
    )
    results = {
        "task": FLAGS.task,
        "train_steps": FLAGS.train_steps,
        "resumed_from_step": resumed_from,
        "parameters": int(model.count_params()),
        "train_seconds_this_run": round(time.time() - start, 1),
        **{f"validation_{k}": v for k, v in
           model.evaluate(validation, verbose=0, return_dict=True).items()},
    }
    if pairs is not None:
        results.update(evaluate_generation(model, pairs[0], pairs[1]))
    model.save(os.path.join(FLAGS.output_dir, "model.keras"))
    if FLAGS.export_dir:
        version_dir = keras_llm.export.export_saved_model(
            model, FLAGS.export_dir, max_new_tokens=FLAGS.export_max_new_tokens)
        logging.info("exported %s", version_dir)
    with open(os.path.join(FLAGS.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
