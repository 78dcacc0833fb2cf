"""Training-step throughput: keras-llm next to keras-hub and Hugging Face, the same work for each.

What is measured: for each library, the wall-clock time of `--steps` training steps (forward,
backward and an AdamW update) on one fixed in-memory batch of random tokens, repeated
`--repeats` times after a compile call and `--warmup` untimed steps. Every library builds the
same architecture (read from a keras-llm preset, `--size`), with the same dtype policy, dropout,
batch, sequence length, optimizer settings and the same random token data (`--seed`); weights
are random (throughput does not depend on their values).

`--model=bert` (default; BERT-base at batch 32 x 128 is issue #7's headline figure): sequence
classification with 2 labels and sparse cross-entropy on the logits.

- keras-llm: `BertClassifier(Bert.from_preset(size))`.
- keras-hub: `BertTextClassifier(BertBackbone(...), preprocessor=None)`, which is the backbone
  with dropout and a Dense layer on its pooled `[CLS]` output, the same head as keras-llm's.
- Hugging Face: `BertForSequenceClassification` with `attn_implementation="sdpa"`.

`--model=gpt`: GPT-2 causal-LM training (loss on every next token).

- keras-llm: `GptCausalLM(Gpt.from_preset(size))`, `fit(x)` (it shifts the labels itself).
- keras-hub: `GPT2CausalLM(GPT2Backbone(...), preprocessor=None)`, `fit(x, y, sample_weight)`
  with `y` the tokens shifted left and the last position weighted 0, as its preprocessor does.
- Hugging Face: `GPT2LMHeadModel(input_ids, labels=input_ids)`.

`--model=t5`: T5 v1.0 seq2seq training (`--sequence_length` encoder tokens, `--decoder_length`
target tokens, teacher forcing on the target shifted right behind the start token 0).

- keras-llm: `T5Seq2SeqLM(T5.from_preset(size))`.
- keras-hub: `T5Seq2SeqLM(T5Backbone(..., activation="relu", use_gated_activation=False),
  preprocessor=None)`: the same v1.0 model with a tied, rescaled output projection, so it is
  included (a backbone-only comparison would not be the same work).
- Hugging Face: `T5ForConditionalGeneration(input_ids, attention_mask, labels)`.

How each library trains:

- Keras libraries: `model.compile(AdamW, loss, no metrics, jit_compile=--jit_compile)`, then
  `--steps` calls of `model.train_on_batch` on the batch, held as backend tensors
  (`--keras_loop=train_on_batch`, the default), or one `model.fit` call per timed repeat over
  `--steps` copies of the batch (`--keras_loop=fit`, with `--steps_per_execution`). Both return
  the loss as a host float, so the timing waits for every step. On this CPU `fit` cost about
  100 ms more per call than the same steps of `train_on_batch` (bert_tiny: twice the time per
  step with 3 steps a call, on TensorFlow and JAX alike), hence the default; on a GPU, where
  `train_on_batch` waits for each step, compare `--keras_loop=fit` with many `--steps`.
  `mixed_float16` wraps the optimizer in a `LossScaleOptimizer`.
- Hugging Face (PyTorch): a plain loop of `loss = model(**batch).loss; loss.backward();
  optimizer.step(); optimizer.zero_grad()`, `torch.optim.AdamW` (fused on CUDA), autocast to
  bfloat16/float16 for the mixed policies (with a `GradScaler` for float16), optionally
  `torch.compile` (`--torch_compile`); the last loss is copied to the host, so the timing waits
  for the device.

Each library runs in a child process of its own (`--in_process` runs them all in this one):
PyTorch measured after TensorFlow in one process ran ten to fifty times slower on this CPU,
their thread pools competing. By default (`--schedule=interleaved`) every library is built,
compiled and warmed up first, and then the timed repeats alternate between the libraries, so
that a change in the machine's load (this CPU is shared) hits all of them alike;
`--schedule=sequential` measures one library after the other, each with the device to itself
(use it on a GPU when the models do not fit in memory together). The first call
(one step) compiles and is timed on its own ("compile s"). Reported per library:
samples/s (median, min and max over the repeats), tokens/s (samples/s x tokens per sample; T5
counts encoder and decoder tokens), model TFLOP/s as `6 x parameters x tokens / time` (with the
keras-llm model's parameter count, embeddings included, for every library, so that it measures
the same work; for T5 it overstates the real FLOPs, since each token passes only the encoder or
the decoder), the parameter count of each library's model (the counts are checked to agree), and
the speed-up of the median over keras-hub's. A NaN or infinite loss from any library stops the
run with a non-zero exit status.

Run from the repository root:

    KERAS_BACKEND=tensorflow python -m benchmarks.train --size=bert_small --dtype=float32
    KERAS_BACKEND=jax python benchmarks/train.py --size=bert_base --dtype=mixed_bfloat16 \\
        --jit_compile=true --torch_compile
    python -m benchmarks.train --model=gpt --size=gpt2_small --batch_size=8
    python -m benchmarks.train --model=t5 --size=t5_small --sequence_length=512

A table is printed and every figure, the settings, library versions, backend and device are
written to `--output` (JSON). Under `KERAS_BACKEND=jax` TensorFlow is not needed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

if __package__ in (None, ""):  # Run as `python benchmarks/train.py`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# JAX must not take most of the GPU up front: the other libraries train beside it (or after it
# in this process).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    BenchmarkError,
    comma_separated,
    environment,
    format_table,
    is_installed,
    limit_tensorflow_gpu_memory,
    summarize,
    time_call,
    write_json,
)
from benchmarks.peers import (  # noqa: E402
    DEFAULT_SIZES,
    FAMILIES,
    MODELS,
    huggingface_config,
    keras_hub_backbone,
    model_shape,
)

LIBRARIES = ("keras_llm", "keras_hub", "huggingface")
DTYPES = ("float32", "mixed_bfloat16", "mixed_float16")
DEFAULT_OUTPUT = "benchmarks/results/train.json"
# keras-llm preset families and the defaults of each model.
DEFAULT_BATCH_SIZES = {"bert": 32, "gpt": 8, "t5": 32}
DEFAULT_SEQUENCE_LENGTHS = {"bert": 128, "gpt": 1024, "t5": 512}
NUM_CLASSES = 2


@dataclass
class Batch:
    """The one batch every library trains on, as NumPy arrays in keras-llm's input names."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    tokens_per_sample: int


@dataclass
class Trainer:
    """One library's model: `train(steps) -> loss` runs `steps` steps and returns a host float."""

    library: str
    num_parameters: int
    train: Callable[[int], float]
    info: dict[str, Any] = field(default_factory=dict)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value}")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more; got {value}")
    return number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", choices=MODELS, default="bert")
    parser.add_argument("--size", default=None,
                        help="keras-llm preset whose shape every library builds; unset: "
                             + ", ".join(f"{m}: {s}" for m, s in DEFAULT_SIZES.items()))
    parser.add_argument("--batch_size", type=_positive_int, default=None,
                        help="default: " + ", ".join(
                            f"{m}: {b}" for m, b in DEFAULT_BATCH_SIZES.items()))
    parser.add_argument("--sequence_length", type=_positive_int, default=None,
                        help="tokens per sample (T5: encoder tokens); default: " + ", ".join(
                            f"{m}: {s}" for m, s in DEFAULT_SEQUENCE_LENGTHS.items()))
    parser.add_argument("--decoder_length", type=_positive_int, default=128,
                        help="T5 only: target tokens per sample")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="dtype policy of every model (Hugging Face: autocast)")
    parser.add_argument("--jit_compile", choices=("true", "false", "auto"), default="true",
                        help="`jit_compile` (XLA) of the Keras libraries' compile()")
    parser.add_argument("--torch_compile", action="store_true",
                        help="torch.compile the Hugging Face model")
    parser.add_argument("--keras_loop", choices=("train_on_batch", "fit"),
                        default="train_on_batch",
                        help="how the Keras libraries run steps: train_on_batch calls, or one "
                             "fit call over --steps copies of the batch per timed repeat")
    parser.add_argument("--steps_per_execution", type=_positive_int, default=1,
                        help="Keras compile(steps_per_execution=...) with --keras_loop=fit")
    parser.add_argument("--steps", type=_positive_int, default=10, help="steps per timed repeat")
    parser.add_argument("--warmup", type=_non_negative_int, default=2,
                        help="untimed steps after the compile call")
    parser.add_argument("--repeats", type=_positive_int, default=3, help="timed repeats")
    parser.add_argument("--learning_rate", type=float, default=2e-5)
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--dropout", type=float, default=0.1,
                        help="dropout of every model (fine-tuning keeps it on)")
    parser.add_argument("--attention_dropout", type=float, default=None,
                        help="dropout of the attention probabilities (BERT and GPT; default "
                             "--dropout). 0 lets every library train through its fused "
                             "attention kernel; keras-hub, which has no such option, gets its "
                             "attention layers' rate set after they are built")
    parser.add_argument("--libraries", type=comma_separated, default="auto",
                        help=f"comma-separated subset of {','.join(LIBRARIES)}; `auto`: "
                             "keras_llm, keras_hub and huggingface when torch is installed")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and weights")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON result file")
    parser.add_argument("--schedule", choices=("interleaved", "sequential"),
                        default="interleaved",
                        help="interleaved: build every library, then alternate their timed "
                             "repeats (a change in the machine's load hits all alike); "
                             "sequential: one library after the other (all memory to each)")
    parser.add_argument("--in_process", action="store_true",
                        help="measure every library in this process instead of one child "
                             "process each (starts faster; PyTorch next to TensorFlow in one "
                             "process then competes for the CPU threads)")
    # Internal: the per-library child process.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker_count_only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    huggingface_installed = is_installed("torch") and is_installed("transformers")
    if args.libraries == ["auto"]:
        args.libraries = ["keras_llm", "keras_hub"] + (
            ["huggingface"] if huggingface_installed else [])
    unknown = sorted(set(args.libraries) - set(LIBRARIES))
    if unknown or not args.libraries:
        parser.error(f"--libraries must name some of {', '.join(LIBRARIES)} (or `auto`); "
                     f"got {','.join(args.libraries) or 'nothing'}")
    args.libraries = [name for name in LIBRARIES if name in args.libraries]
    if "huggingface" in args.libraries and not huggingface_installed:
        parser.error("--libraries=huggingface needs torch and transformers installed "
                     "(pip install torch transformers), or leave huggingface out")
    if not 0.0 <= args.dropout < 1.0:
        parser.error(f"--dropout must be in [0, 1); got {args.dropout}")
    if args.attention_dropout is None:
        args.attention_dropout = args.dropout
    if not 0.0 <= args.attention_dropout < 1.0:
        parser.error(f"--attention_dropout must be in [0, 1); got {args.attention_dropout}")
    if args.model == "t5" and args.attention_dropout != args.dropout:
        parser.error("--attention_dropout applies to bert and gpt; T5 (as in Hugging Face) "
                     "has one dropout rate: leave it out or set --dropout")
    if args.learning_rate <= 0:
        parser.error(f"--learning_rate must be positive; got {args.learning_rate}")
    if args.steps_per_execution > 1 and args.keras_loop != "fit":
        parser.error("--steps_per_execution > 1 needs --keras_loop=fit")
    args.size = args.size or DEFAULT_SIZES[args.model]
    args.batch_size = args.batch_size or DEFAULT_BATCH_SIZES[args.model]
    args.sequence_length = args.sequence_length or DEFAULT_SEQUENCE_LENGTHS[args.model]

    from keras_llm.models import list_presets

    presets = list_presets(FAMILIES[args.model])
    if args.size not in presets:
        parser.error(f"--size={args.size} is not a {FAMILIES[args.model]} preset "
                     f"(--model={args.model}); choose one of {', '.join(presets)}")
    return args


def check_loss(library: str, loss: float, where: str) -> float:
    """Returns `loss` as a float, or raises `BenchmarkError` if it is NaN or infinite."""
    loss = float(loss)
    if not math.isfinite(loss):
        raise BenchmarkError(
            f"{library} gave a {loss} loss {where}: its training diverged, so its speed is "
            "meaningless. Try --dtype=float32, a smaller --learning_rate, or report the bug."
        )
    return loss


# The data.


def make_batch(args: argparse.Namespace, vocab_size: int) -> Batch:
    """Random tokens (and labels) from `args.seed`, the same for every library."""
    rng = np.random.default_rng(args.seed)
    batch, length = args.batch_size, args.sequence_length
    # Id 0 is padding in all three vocabularies; real tokens come from [1, vocab_size).
    token_ids = rng.integers(1, vocab_size, (batch, length)).astype("int32")
    ones = np.ones((batch, length), "int32")
    if args.model == "bert":
        inputs = {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids),
                  "padding_mask": ones}
        labels = rng.integers(0, NUM_CLASSES, (batch,)).astype("int32")
        return Batch(inputs, labels, length)
    if args.model == "gpt":
        return Batch({"token_ids": token_ids, "padding_mask": ones}, None, length)
    labels = rng.integers(2, vocab_size, (batch, args.decoder_length)).astype("int32")
    decoder_ids = np.concatenate([np.zeros((batch, 1), "int32"), labels[:, :-1]], axis=1)
    inputs = {
        "encoder_token_ids": token_ids,
        "encoder_padding_mask": ones,
        "decoder_token_ids": decoder_ids,
        "decoder_padding_mask": np.ones_like(decoder_ids),
    }
    return Batch(inputs, labels, length + args.decoder_length)


def _tile(tree: Any, copies: int) -> Any:
    """Every array of a dict (or an array) repeated `copies` times along the batch axis."""
    if tree is None:
        return None
    if isinstance(tree, dict):
        return {key: _tile(value, copies) for key, value in tree.items()}
    return np.concatenate([tree] * copies, axis=0)


# Keras libraries (keras-llm, keras-hub).


def _keras_optimizer(args: argparse.Namespace):
    import keras

    optimizer = keras.optimizers.AdamW(
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, epsilon=1e-6)
    if args.dtype == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def keras_trainer(library: str, model, args: argparse.Namespace, x: dict,
                  y: np.ndarray | None, sample_weight: np.ndarray | None,
                  compile_kwargs: dict) -> Trainer:
    """Compiles `model` and returns a `Trainer` that runs `train_on_batch` (or `fit`) steps."""
    import keras

    jit_compile = {"true": True, "false": False, "auto": "auto"}[args.jit_compile]
    model.compile(optimizer=_keras_optimizer(args), jit_compile=jit_compile,
                  steps_per_execution=args.steps_per_execution, **compile_kwargs)
    tiled: dict[int, tuple] = {}

    def data(copies: int) -> tuple:
        if copies not in tiled:
            tiled[copies] = (_tile(x, copies), _tile(y, copies), _tile(sample_weight, copies))
        return tiled[copies]

    # The batch on the device once, as the Hugging Face runner holds it.
    on_device = [None if a is None else keras.tree.map_structure(keras.ops.convert_to_tensor, a)
                 for a in (x, y, sample_weight)]

    def train(steps: int) -> float:
        if args.keras_loop == "train_on_batch":
            model.reset_metrics()  # The loss returned is then the mean over these steps.
            for _ in range(steps):
                logs = model.train_on_batch(*on_device[:2], sample_weight=on_device[2],
                                            return_dict=True)
            return float(logs["loss"])  # A NumPy value: the step has finished.
        tiled_x, tiled_y, tiled_weight = data(steps)
        history = model.fit(tiled_x, tiled_y, sample_weight=tiled_weight,
                            batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)
        return float(history.history["loss"][-1])  # The epoch's mean, fetched to the host.

    info = {"jit_compile": model.jit_compile, "loop": args.keras_loop,
            "steps_per_execution": args.steps_per_execution}
    return Trainer(library, int(model.count_params()), train, info)


def keras_llm_trainer(args: argparse.Namespace, batch: Batch) -> Trainer:
    import keras

    import keras_llm

    keras.utils.set_random_seed(args.seed)
    family = getattr(keras_llm.models, FAMILIES[args.model])
    overrides = {} if args.model == "t5" else {"attention_dropout": args.attention_dropout}
    backbone = family.from_preset(args.size, dropout=args.dropout, dtype=args.dtype, **overrides)
    first = {key: value[:1] for key, value in batch.inputs.items()}
    if args.model == "bert":
        model = keras_llm.models.BertClassifier(backbone, num_classes=NUM_CLASSES)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        compile_kwargs = {"loss": loss, "metrics": None}
    elif args.model == "gpt":
        model = keras_llm.models.GptCausalLM(backbone)
        compile_kwargs = {"loss": "auto", "metrics": None}
    else:
        model = keras_llm.models.T5Seq2SeqLM(backbone)
        compile_kwargs = {"loss": "auto", "metrics": None}
    model(first)  # Builds the weights.
    return keras_trainer("keras_llm", model, args, batch.inputs, batch.labels, None,
                         compile_kwargs)


def keras_hub_trainer(args: argparse.Namespace, batch: Batch, shape) -> Trainer:
    import keras
    import keras_hub

    keras.utils.set_random_seed(args.seed)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = dict(batch.inputs)
    y, sample_weight = batch.labels, None
    backbone = keras_hub_backbone(args.model, shape, args.dropout, args.dtype)
    if args.model == "bert":
        model = keras_hub.models.BertTextClassifier(
            backbone, num_classes=NUM_CLASSES, preprocessor=None, dropout=args.dropout)
        compile_kwargs = {"loss": loss, "metrics": None}
    elif args.model == "gpt":
        model = keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)
        # What keras-hub's preprocessor feeds: next tokens as labels, the last one unweighted.
        token_ids = x["token_ids"]
        y = np.concatenate([token_ids[:, 1:], token_ids[:, :1]], axis=1)
        sample_weight = np.ones_like(token_ids, dtype="float32")
        sample_weight[:, -1] = 0.0
        compile_kwargs = {"loss": loss, "weighted_metrics": None}
    else:
        model = keras_hub.models.T5Seq2SeqLM(backbone, preprocessor=None)
        sample_weight = x["decoder_padding_mask"].astype("float32")
        compile_kwargs = {"loss": loss, "weighted_metrics": None}
    model({key: value[:1] for key, value in x.items()})  # Builds the weights.
    if args.attention_dropout != args.dropout:
        set_keras_attention_dropout(model, args.attention_dropout)
    return keras_trainer("keras_hub", model, args, x, y, sample_weight, compile_kwargs)


def set_keras_attention_dropout(model, rate: float) -> int:
    """Sets the attention-probability dropout of every `keras.layers.MultiHeadAttention`.

    keras-hub's backbones take one `dropout` for everything; Keras' attention layer reads
    `_dropout` on every call (0 selects `ops.dot_product_attention`, the fused kernel), so
    setting it on the built layers gives the same model as a separate option would.
    Returns the number of layers changed (an error if none: keras-hub changed its layers).
    """
    import keras

    layers = [layer for layer in model._flatten_layers()
              if isinstance(layer, keras.layers.MultiHeadAttention)]
    if not layers:
        raise BenchmarkError("found no keras.layers.MultiHeadAttention in the keras-hub model "
                             "to set --attention_dropout on")
    for layer in layers:
        layer._dropout = rate
        layer._dropout_layer.rate = rate
    return len(layers)


# Hugging Face (PyTorch).


def huggingface_model(args: argparse.Namespace, shape):
    """The `transformers` model of the same shape, with SDPA attention."""
    import transformers

    if args.model == "bert":
        config = huggingface_config("bert", shape, args.dropout, args.attention_dropout,
                                    num_labels=NUM_CLASSES)
        return transformers.BertForSequenceClassification(config)
    config = huggingface_config(args.model, shape, args.dropout, args.attention_dropout)
    if args.model == "gpt":
        return transformers.GPT2LMHeadModel(config)
    return transformers.T5ForConditionalGeneration(config)


def huggingface_trainer(args: argparse.Namespace, batch: Batch, shape) -> Trainer:
    import torch

    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = huggingface_model(args, shape).to(device).train()
    num_parameters = sum(p.numel() for p in model.parameters())  # Tied weights once.

    def tensor(array: np.ndarray):
        return torch.from_numpy(array.astype(np.int64)).to(device)

    if args.model == "bert":
        inputs = {"input_ids": tensor(batch.inputs["token_ids"]),
                  "token_type_ids": tensor(batch.inputs["segment_ids"]),
                  "attention_mask": tensor(batch.inputs["padding_mask"]),
                  "labels": tensor(batch.labels)}
    elif args.model == "gpt":
        ids = tensor(batch.inputs["token_ids"])
        inputs = {"input_ids": ids, "attention_mask": tensor(batch.inputs["padding_mask"]),
                  "labels": ids}
    else:  # The model shifts `labels` right behind decoder_start_token_id itself.
        inputs = {"input_ids": tensor(batch.inputs["encoder_token_ids"]),
                  "attention_mask": tensor(batch.inputs["encoder_padding_mask"]),
                  "decoder_attention_mask": tensor(batch.inputs["decoder_padding_mask"]),
                  "labels": tensor(batch.labels)}

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate,
                                  weight_decay=args.weight_decay, eps=1e-6,
                                  fused=device == "cuda")
    autocast_dtype = {"mixed_bfloat16": torch.bfloat16,
                      "mixed_float16": torch.float16}.get(args.dtype)
    scaler = torch.amp.GradScaler(device) if args.dtype == "mixed_float16" else None
    forward = torch.compile(model) if args.torch_compile else model

    def step():
        with torch.autocast(device, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            loss = forward(**inputs).loss
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    def train(steps: int) -> float:
        for _ in range(steps):
            loss = step()
        return float(loss.detach().float().cpu())  # Waits for the device.

    info = {"device": device, "torch_threads": torch.get_num_threads(),
            "torch_compile": args.torch_compile,
            "attn_implementation": model.config._attn_implementation,
            "autocast": str(autocast_dtype).removeprefix("torch.") if autocast_dtype else None}
    return Trainer("huggingface", num_parameters, train, info)


# The benchmark.


# Sessions: one library's model, compiled and warmed up, ready for timed repeats. A local
# session lives in this process; a worker session in a child process of its own, driven over
# a pipe, so that repeats of libraries in different processes can still alternate.

PROTOCOL_PREFIX = "@@train-benchmark "


@dataclass
class Context:
    """What every process derives alike from the flags: the shape, the data, the device."""

    shape: SimpleNamespace
    batch: Batch
    environment: dict[str, Any]


def make_context(args: argparse.Namespace) -> Context:
    """keras-llm's preset shape (checked against the flags), the batch and the environment."""
    limit_tensorflow_gpu_memory()
    import keras

    import keras_llm

    family = getattr(keras_llm.models, FAMILIES[args.model])
    shape = model_shape(family.from_preset(args.size))
    limit = getattr(shape, "max_sequence_length", None)
    lengths = [("--sequence_length", args.sequence_length)]
    if args.model == "t5":
        lengths.append(("--decoder_length", args.decoder_length))
    for flag, length in lengths:
        if limit is not None and length > limit:
            raise BenchmarkError(f"{flag}={length} exceeds {args.size}'s {limit} positions; "
                                 f"use at most {limit}.")
    return Context(shape, make_batch(args, shape.vocab_size),
                   environment(keras.backend.backend()))


def make_trainer(args: argparse.Namespace, library: str, context: Context) -> Trainer:
    if library == "keras_llm":
        return keras_llm_trainer(args, context.batch)
    if library == "keras_hub":
        return keras_hub_trainer(args, context.batch, context.shape)
    return huggingface_trainer(args, context.batch, context.shape)


class LocalSession:
    """A library measured in this process."""

    def __init__(self, args: argparse.Namespace, library: str, context: Context):
        self.args, self.library, self.context = args, library, context
        self.trainer = make_trainer(args, library, context)
        self.compile_seconds, self.first_loss = time_call(lambda: self.trainer.train(1))
        check_loss(library, self.first_loss, "on the first step")
        if args.warmup:
            check_loss(library, self.trainer.train(args.warmup), "during the warm-up")
        self.seconds: list[float] = []
        self.losses: list[float] = []

    def repeat(self) -> None:
        elapsed, loss = time_call(lambda: self.trainer.train(self.args.steps))
        where = f"in timed repeat {len(self.seconds) + 1}"
        self.losses.append(check_loss(self.library, loss, where))
        self.seconds.append(elapsed)

    def finish(self) -> dict[str, Any]:
        args, trainer = self.args, self.trainer
        self.trainer = None  # Frees the model.
        rates = summarize(self.seconds, args.steps * args.batch_size)
        return {
            "library": self.library,
            "num_parameters": trainer.num_parameters,
            "compile_seconds": self.compile_seconds,
            "seconds": self.seconds,
            "samples_per_second": {k: rates[k] for k in ("median", "min", "max")},
            "median_seconds": rates["median_seconds"],
            "ms_per_step": 1000.0 * rates["median_seconds"] / args.steps,
            "tokens_per_second": rates["median"] * self.context.batch.tokens_per_sample,
            "first_loss": self.first_loss,
            "losses": self.losses,
            **trainer.info,
        }

    def close(self) -> None:
        self.trainer = None


def _worker_argv(args: argparse.Namespace, library: str, count_only: bool) -> list[str]:
    """The command line of a child process that serves `library`'s session."""
    argv = [sys.executable, "-m", "benchmarks.train", f"--libraries={library}", "--worker"]
    for name in ("model", "size", "batch_size", "sequence_length", "decoder_length", "dtype",
                 "jit_compile", "keras_loop", "steps_per_execution", "steps", "warmup",
                 "repeats", "learning_rate", "weight_decay", "dropout", "attention_dropout",
                 "seed"):
        argv.append(f"--{name}={getattr(args, name)}")
    if args.torch_compile:
        argv.append("--torch_compile")
    if count_only:
        argv.append("--worker_count_only")
    return argv


class WorkerSession:
    """A library measured in a child process (`--worker`), one request per line on its stdin;
    it answers with one JSON line on its stdout after `PROTOCOL_PREFIX`."""

    def __init__(self, args: argparse.Namespace, library: str, count_only: bool = False):
        import subprocess
        import tempfile

        self.library = library
        root = Path(__file__).resolve().parents[1]
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        self.log = tempfile.TemporaryFile(mode="w+")  # Its stderr: read back on a failure.
        self.process = subprocess.Popen(
            _worker_argv(args, library, count_only), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, cwd=root)
        self.ready = self._receive()

    def _receive(self) -> dict[str, Any]:
        for line in self.process.stdout:
            if line.startswith(PROTOCOL_PREFIX):
                message = json.loads(line[len(PROTOCOL_PREFIX):])
                if "error" in message:
                    self.close()
                    raise BenchmarkError(message["error"])
                return message
        status = self.process.wait()
        self.log.seek(0)
        tail = "\n".join(self.log.read().strip().splitlines()[-25:])
        self.close()
        raise BenchmarkError(f"the {self.library} process ended (exit status {status}) "
                             f"without an answer; its last output:\n{tail}")

    def _request(self, command: str) -> dict[str, Any]:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._receive()

    def repeat(self) -> None:
        self._request("repeat")

    def finish(self) -> dict[str, Any]:
        result = self._request("finish")["result"]
        self.close()
        return result

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except Exception:  # noqa: BLE001 - a stuck child must not outlive the benchmark.
                self.process.kill()
                self.process.wait()
        self.log.close()


def serve_worker(args: argparse.Namespace) -> int:
    """The child side of `WorkerSession`: builds one library's session and serves requests."""

    def send(message: dict[str, Any]) -> None:
        print(PROTOCOL_PREFIX + json.dumps(message), flush=True)

    try:
        context = make_context(args)
        ready = {"tokens_per_sample": context.batch.tokens_per_sample,
                 "shape": vars(context.shape), "environment": context.environment}
        if args.worker_count_only:
            ready["num_parameters"] = keras_llm_trainer(args, context.batch).num_parameters
            send(ready)
            return 0
        session = LocalSession(args, args.libraries[0], context)
        send({**ready, "num_parameters": session.trainer.num_parameters})
        for line in sys.stdin:
            if line.strip() == "repeat":
                session.repeat()
                send({"done": len(session.seconds)})
            elif line.strip() == "finish":
                send({"result": session.finish()})
                return 0
        return 0
    except BenchmarkError as error:
        send({"error": str(error)})
        return 1
    except Exception as error:  # noqa: BLE001 - reported to the parent, which exits non-zero.
        import traceback

        traceback.print_exc()
        send({"error": f"{args.libraries[0]} failed: {type(error).__name__}: {error}"})
        return 1


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every library of `args.libraries`: a compile call (one step), `--warmup` untimed steps,
    then `--repeats` timed calls of `--steps` steps.

    `--schedule=interleaved` builds every library first and alternates their timed repeats;
    `sequential` measures one library after the other. Returns the results with keras-llm's
    parameter count, the shape, tokens per sample and the environment.
    """
    context = make_context(args) if args.in_process else None

    def open_session(library: str):
        if args.in_process:
            return LocalSession(args, library, context)
        return WorkerSession(args, library)

    sessions: list = []
    try:
        if args.in_process:
            info = {"tokens_per_sample": context.batch.tokens_per_sample,
                    "shape": vars(context.shape), "environment": context.environment}
        if args.schedule == "interleaved":
            sessions = [open_session(library) for library in args.libraries]
            for _ in range(args.repeats):
                for session in sessions:
                    session.repeat()
            results = [session.finish() for session in sessions]
        else:
            results = []
            for library in args.libraries:
                sessions = [open_session(library)]
                for _ in range(args.repeats):
                    sessions[0].repeat()
                results.append(sessions[0].finish())
        if not args.in_process:
            first = sessions[0].ready
            info = {k: first[k] for k in ("tokens_per_sample", "shape", "environment")}
    finally:
        for session in sessions:
            session.close()
    reference = next((r["num_parameters"] for r in results if r["library"] == "keras_llm"),
                     None)
    if reference is None:  # keras-llm not measured: build it for its parameter count only.
        if args.in_process:
            reference = keras_llm_trainer(args, context.batch).num_parameters
        else:
            counter = WorkerSession(args, "keras_llm", count_only=True)
            counter.close()
            reference = counter.ready["num_parameters"]
    return {"results": results, "num_parameters": reference, **info}


def add_derived_figures(results: list[dict[str, Any]], reference_parameters: int) -> None:
    """`tflops` (`6 x parameters x tokens/s`, with keras-llm's parameter count for every
    library) and `speedup_vs_keras_hub` (median samples/s over keras-hub's; None without it)."""
    reference = next((r["samples_per_second"]["median"] for r in results
                      if r["library"] == "keras_hub"), None)
    for r in results:
        r["tflops"] = 6.0 * reference_parameters * r["tokens_per_second"] / 1e12
        median = r["samples_per_second"]["median"]
        r["speedup_vs_keras_hub"] = median / reference if reference else None


def parameter_counts(results: list[dict[str, Any]], reference_parameters: int) -> dict:
    """Each library's parameter count next to keras-llm's, and whether they all agree."""
    counts = {"keras_llm": reference_parameters}
    counts.update({r["library"]: r["num_parameters"] for r in results})
    return {"by_library": counts, "agree": len(set(counts.values())) == 1}


def table(results: list[dict[str, Any]]) -> str:
    headers = ("library", "samples/s (median)", "min-max", "tokens/s", "TFLOP/s", "ms/step",
               "compile s", "parameters", "vs keras-hub")
    rows = []
    for r in results:
        sps = r["samples_per_second"]
        speedup = r["speedup_vs_keras_hub"]
        rows.append((
            r["library"],
            f"{sps['median']:.2f}",
            f"{sps['min']:.2f}-{sps['max']:.2f}",
            f"{r['tokens_per_second']:.0f}",
            f"{r['tflops']:.3f}",
            f"{r['ms_per_step']:.1f}",
            f"{r['compile_seconds']:.1f}",
            f"{r['num_parameters']:,}",
            f"{speedup:.2f}x" if speedup is not None else "-",
        ))
    return format_table(headers, rows)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measures every library of `args.libraries`; returns the report (see the module doc)."""
    print(f"Training step, --model={args.model} {args.size}, batch {args.batch_size}, "
          f"dtype {args.dtype}, jit_compile {args.jit_compile}, {args.repeats} repeats x "
          f"{args.steps} steps after {args.warmup} warm-up, libraries "
          f"{', '.join(args.libraries)} ({args.schedule}, "
          + ("one process" if args.in_process else "one process each") + ").", flush=True)
    measured = benchmark(args)
    results = measured["results"]
    for result in results:
        print(f"  {result['library']:<12} {result['samples_per_second']['median']:9.2f} "
              f"samples/s (compile {result['compile_seconds']:.1f} s, loss "
              f"{result['losses'][-1]:.3f})", flush=True)
    reference_parameters = measured["num_parameters"]
    add_derived_figures(results, reference_parameters)
    counts = parameter_counts(results, reference_parameters)
    if not counts["agree"]:
        print(f"WARNING: the libraries' parameter counts differ: {counts['by_library']}",
              flush=True)
    return {
        "benchmark": "train",
        "description": "training-step throughput (forward, backward, AdamW update), "
                       "samples per second, compile and warm-up excluded",
        "settings": {
            "model": args.model,
            "size": args.size,
            "batch_size": args.batch_size,
            "sequence_length": args.sequence_length,
            "decoder_length": args.decoder_length if args.model == "t5" else None,
            "tokens_per_sample": measured["tokens_per_sample"],
            "dtype": args.dtype,
            "jit_compile": args.jit_compile,
            "torch_compile": args.torch_compile,
            "keras_loop": args.keras_loop,
            "steps_per_execution": args.steps_per_execution,
            "steps": args.steps,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "schedule": args.schedule,
            "one_process_per_library": not args.in_process,
            "optimizer": {"name": "AdamW", "learning_rate": args.learning_rate,
                          "weight_decay": args.weight_decay, "epsilon": 1e-6},
            "dropout": args.dropout,
            "attention_dropout": args.attention_dropout,
            "libraries": args.libraries,
            "seed": args.seed,
        },
        "model": {**measured["shape"], "num_parameters": reference_parameters},
        "parameter_counts": counts,
        "environment": measured["environment"],
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.worker:  # A child of `WorkerSession`.
        return serve_worker(args)
    try:
        report = run(args)
    except BenchmarkError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    print()
    print(table(report["results"]))
    path = write_json(args.output, report)
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
