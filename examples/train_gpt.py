"""Trains a GPT causal language model on a plain-text file, from scratch or from a checkpoint.

    python examples/train_gpt.py --output_dir=runs/shakespeare
    python examples/train_gpt.py --text_file=my.txt --tokenizer=gpt2 \
        --tokenizer_dir=/path/to/gpt2 --init_checkpoint=/path/to/hf-gpt2 --output_dir=runs/ft

The text is tokenized (UTF-8 bytes, or GPT-2's BPE), the last `--validation_fraction`
held out, and the rest packed into blocks of `--sequence_length` tokens. AdamW with
linear warmup and cosine decay, global-norm clipping, optional mixed precision and
XLA. Every `--steps_per_checkpoint` steps it saves model and optimizer state,
reports validation loss and perplexity, logs a sample generation, and writes
TensorBoard logs; killed and restarted with the same flags, it resumes from the
last checkpoint at the same step and data position. At the end it writes
`results.json` and the trained model `model.keras`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

import keras_llm
from keras_llm.data import pack_blocks, read_text_file, tokenize_text, unigram_cross_entropy
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

flags.DEFINE_string("text_file", str(SHARED_DATA / "tinyshakespeare" / "input.txt"),
                    "Plain UTF-8 text to train on.")
flags.DEFINE_enum("tokenizer", "byte", ["byte", "gpt2"], "UTF-8 bytes or GPT-2 BPE.")
flags.DEFINE_string("tokenizer_dir", str(SHARED_DATA / "tokenizers" / "gpt2"),
                    "Folder with encoder.json + vocab.bpe (or vocab.json + merges.txt).")
flags.DEFINE_string("init_checkpoint", None,
                    "Continue from a local HF GPT-2 folder or a keras-llm .keras file.")
flags.DEFINE_integer("num_layers", 6, "Decoder blocks (ignored with --init_checkpoint).")
flags.DEFINE_integer("num_heads", 6, "Attention heads.")
flags.DEFINE_integer("hidden_size", 384, "Hidden width.")
flags.DEFINE_float("dropout", 0.1, "Dropout rate.")
flags.DEFINE_integer("sequence_length", 128, "Tokens per training block.")
flags.DEFINE_integer("batch_size", 16, "Global batch size.")
flags.DEFINE_integer("train_steps", 600, "Optimizer steps in all.")
flags.DEFINE_integer("steps_per_checkpoint", 100,
                     "Checkpoint, validate and sample this often; must divide --train_steps.")
flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate.")
flags.DEFINE_float("warmup_ratio", 0.05, "Fraction of steps spent warming up.")
flags.DEFINE_float("weight_decay", 0.1, "AdamW weight decay.")
flags.DEFINE_float("clip_norm", 1.0, "Global gradient-norm clip.")
flags.DEFINE_float("validation_fraction", 0.1, "Share of the text held out at its end.")
flags.DEFINE_integer("validation_batches", 20, "Batches per validation.")
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "bfloat16", "float16"], "Precision.")
flags.DEFINE_string("jit_compile", "auto", "XLA for the train step: auto, true or false.")
flags.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                  "Distribution strategy; model_parallel (JAX) splits each block's kernels "
                  "over --model_parallelism devices.")
flags.DEFINE_integer("model_parallelism", None,
                     "--strategy=model_parallel: devices each model is split over "
                     "(default all); the rest hold data-parallel replicas.")
flags.DEFINE_string("sample_prompt", "ROMEO:", "Prompt for the samples logged while training.")
flags.DEFINE_integer("sample_tokens", 100, "Tokens per logged sample.")
flags.DEFINE_integer("export_max_new_tokens", 64, "The exported model's generation cap.")
flags.DEFINE_string("export_dir", None,
                    "If set, also export a TF Serving SavedModel (strings in, text out) here.")
flags.DEFINE_string("output_dir", "runs/train_gpt", "Checkpoints, logs and results.")
flags.DEFINE_integer("seed", 0, "Random seed (initialisation, shuffling, sampling).")
FLAGS = flags.FLAGS
resumable.validate_step_flags("train_steps")



class SampleLogger(keras.callbacks.Callback):
    """Generates a sample at every validation and appends it to `samples.txt`."""

    def __init__(self, prompt: str, tokens: int, path: str):
        super().__init__()
        self.prompt, self.tokens, self.path = prompt, tokens, path

    def on_epoch_end(self, epoch, logs=None):
        text = self.model.generate(self.prompt, max_new_tokens=self.tokens, strategy="top_k",
                                   top_k=20, temperature=0.8, seed=epoch)
        logging.info("sample after checkpoint %d:\n%s", epoch + 1, text)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(f"--- checkpoint {epoch + 1}\n{text}\n")


def make_tokenizer():
    if FLAGS.tokenizer == "byte":
        return keras_llm.tokenizers.ByteTokenizer()
    return keras_llm.tokenizers.BytePairTokenizer.from_pretrained(FLAGS.tokenizer_dir)


def make_model(tokenizer) -> keras_llm.models.GptCausalLM:
    checkpoint = FLAGS.init_checkpoint
    if checkpoint and checkpoint.endswith(".keras"):
        model = keras.models.load_model(checkpoint)
        model.tokenizer = tokenizer
        return model
    if checkpoint:
        return keras_llm.models.GptCausalLM.from_pretrained(checkpoint, tokenizer=tokenizer,
                                                            dropout=FLAGS.dropout)
    gpt = keras_llm.models.Gpt(
        vocab_size=tokenizer.vocabulary_size(),
        num_layers=FLAGS.num_layers,
        num_heads=FLAGS.num_heads,
        hidden_size=FLAGS.hidden_size,
        intermediate_size=4 * FLAGS.hidden_size,
        max_sequence_length=max(FLAGS.sequence_length, 256),
        dropout=FLAGS.dropout,
    )
    return keras_llm.models.GptCausalLM(gpt, tokenizer=tokenizer)


def block_dataset(blocks: np.ndarray, batch_size: int, shuffle: bool) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices(blocks)
    if shuffle:
        # A fixed seed makes the batch order a pure function of the step: resumable.
        dataset = dataset.shuffle(len(blocks), seed=FLAGS.seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    return dataset.map(lambda b: {"token_ids": b}).prefetch(tf.data.AUTOTUNE)


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    set_mixed_precision(FLAGS.mixed_precision)
    os.makedirs(FLAGS.output_dir, exist_ok=True)

    tokenizer = make_tokenizer()
    text = read_text_file(FLAGS.text_file)
    token_ids = tokenize_text(text, tokenizer)
    split = int(len(token_ids) * (1 - FLAGS.validation_fraction))
    train_ids, validation_ids = token_ids[:split], token_ids[split:]
    # Half-overlapping training windows: more distinct contexts from a small corpus.
    train_blocks = pack_blocks(train_ids, FLAGS.sequence_length, FLAGS.sequence_length // 2)
    validation_blocks = pack_blocks(validation_ids, FLAGS.sequence_length)
    baseline = unigram_cross_entropy(train_ids, validation_ids, tokenizer.vocabulary_size())
    logging.info("%d training and %d validation tokens; unigram baseline %.4f nats/token",
                 len(train_ids), len(validation_ids), baseline)

    scope, replicas = distribution_scope(FLAGS.strategy, FLAGS.model_parallelism,
                                         layout="Gpt")
    with scope:
        model = make_model(tokenizer)
        schedule = WarmupDecay(FLAGS.learning_rate, FLAGS.train_steps,
                               int(FLAGS.warmup_ratio * FLAGS.train_steps), decay="cosine",
                               end_learning_rate=FLAGS.learning_rate / 10)
        jit = {"auto": "auto", "true": True, "false": False}[FLAGS.jit_compile.lower()]
        model.compile(
            optimizer=create_adamw(schedule, weight_decay=FLAGS.weight_decay,
                                   beta_2=0.99, epsilon=1e-8, global_clipnorm=FLAGS.clip_norm),
            jit_compile=jit,
        )
    logging.info("training on %d replica(s)", replicas)

    train = block_dataset(train_blocks, FLAGS.batch_size, shuffle=True)
    validation = block_dataset(validation_blocks, FLAGS.batch_size, shuffle=False).take(
        FLAGS.validation_batches)
    callbacks = [
        LearningRateLogger(),
        keras.callbacks.TensorBoard(os.path.join(FLAGS.output_dir, "logs")),
        SampleLogger(FLAGS.sample_prompt, FLAGS.sample_tokens,
                     os.path.join(FLAGS.output_dir, "samples.txt")),
    ]
    start = time.time()
    _, resumed_from = fit_resumable(
        model, train, FLAGS.train_steps, os.path.join(FLAGS.output_dir, "checkpoints"),
        FLAGS.steps_per_checkpoint, validation_data=validation, callbacks=callbacks, verbose=2,
    )
    seconds = time.time() - start

    metrics = model.evaluate(validation, verbose=0, return_dict=True)
    model.save(os.path.join(FLAGS.output_dir, "model.keras"))
    if FLAGS.export_dir:
        version_dir = keras_llm.export.export_saved_model(
            model, FLAGS.export_dir, max_new_tokens=FLAGS.export_max_new_tokens)
        logging.info("exported %s", version_dir)
    results = {
        "validation_loss": metrics["loss"],
        "validation_perplexity": metrics["perplexity"],
        "unigram_baseline_loss": baseline,
        "train_steps": FLAGS.train_steps,
        "resumed_from_step": resumed_from,
        "parameters": int(model.count_params()),
        "tokens_per_step": FLAGS.batch_size * FLAGS.sequence_length,
        "train_seconds_this_run": round(seconds, 1),
        "sample": model.generate(FLAGS.sample_prompt, max_new_tokens=FLAGS.sample_tokens,
                                 strategy="top_k", top_k=20, temperature=0.8, seed=FLAGS.seed),
    }
    with open(os.path.join(FLAGS.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
