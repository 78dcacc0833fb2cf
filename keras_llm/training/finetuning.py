"""The spine of every fine-tuning script: flags, model loading, the BERT recipe, resumable fit.

`run_glue.py`, `run_squad.py` and `run_ner.py` differ in their data, head and
metric; everything else (strategy, precision, checkpoints and resume, the
optimizer, evaluation during training, early stopping, freezing, results and
export) is here, once:

    finetuning.define_flags(default_task="sst2", task_names=GLUE_TASKS)
    ...
    run = finetuning.FinetuningRun(finetuning.FinetuningConfig.from_flags())
    preprocessor = run.load_preprocessor()
    model = run.load_model(keras_llm.models.BertClassifier, num_classes=2)
    run.compile(model, loss=..., num_train_examples=len(train_rows))
    summary = run.fit(model, train_batches, evaluate=lambda m: {"accuracy": ...})
    run.write_results({**summary, **final_metrics})
    run.export(model, preprocessor)
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import keras
from absl import flags, logging

from keras_llm.training.distribution import (
    PRECISIONS,
    STRATEGIES,
    is_chief,
    make_strategy,
    set_mixed_precision,
)
from keras_llm.training.optimizers import create_adamw
from keras_llm.training.resumable import (
    LearningRateLogger,
    _write_json,
    fit_resumable,
    variable_scope,
)
from keras_llm.training.schedules import WarmupDecay

if TYPE_CHECKING:
    import tensorflow as tf

    from keras_llm.models.task import Task
    from keras_llm.tokenizers import BertPreprocessor

_TaskT = TypeVar("_TaskT", bound="Task")
Evaluate = Callable[[keras.Model], dict[str, float]]


@dataclasses.dataclass
class FinetuningConfig:
    """Every setting of a fine-tuning run; the field names are the flag names.

    Settings are checked together when the config is made, so one error lists
    every bad value.

    Example:
    >>> config = FinetuningConfig(task="sst2", batch_size=16, num_train_steps=100)
    >>> config.batch_size, config.warmup_ratio
    (16, 0.1)
    >>> try:
    ...     FinetuningConfig(batch_size=0, learning_rate=-1.0)
    ... except ValueError as error:
    ...     print(error)
    Invalid fine-tuning settings: batch_size must be at least 1, not 0; learning_rate must ...
    """

    task: str | None = None
    data_dir: str | None = None
    init_checkpoint: str | None = None
    vocab_file: str | None = None
    output_dir: str = "runs/finetune"
    max_seq_length: int = 128
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 5e-5
    num_train_epochs: float = 3.0
    num_train_steps: int | None = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    steps_per_checkpoint: int = 500
    strategy: str = "auto"
    mixed_precision: str = "float32"
    jit_compile: str = "auto"
    export_dir: str | None = None
    seed: int = 42
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    tfds_name: str | None = None
    freeze_encoder: bool = False
    trainable_layers: int | None = None
    early_stopping_patience: int | None = None
    eval_every: int | None = None
    dropout: float | None = None
    remat: bool = False
    cpu_devices: int | None = None
    model_parallelism: int | None = None

    def __post_init__(self):
        problems = []
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy must be one of {STRATEGIES}, not {self.strategy!r}")
        if self.mixed_precision not in PRECISIONS:
            problems.append(f"mixed_precision must be one of {sorted(PRECISIONS)}, "
                            f"not {self.mixed_precision!r}")
        if self.jit_compile.lower() not in ("auto", "true", "false"):
            problems.append(f"jit_compile must be auto, true or false, not {self.jit_compile!r}")
        for name in ("max_seq_length", "batch_size", "eval_batch_size", "steps_per_checkpoint",
                     "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate must be positive, not {self.learning_rate}")
        if not 0 <= self.warmup_ratio <= 1:
            problems.append(f"warmup_ratio must be in [0, 1], not {self.warmup_ratio}")
        if self.num_train_steps is None and self.num_train_epochs <= 0:
            problems.append("num_train_epochs must be positive (or set num_train_steps)")
        if self.num_train_steps is not None and self.num_train_steps < 1:
            problems.append(f"num_train_steps must be at least 1, not {self.num_train_steps}")
        if self.trainable_layers is not None and self.trainable_layers < 0:
            problems.append(f"trainable_layers must be >= 0, not {self.trainable_layers}")
        if self.freeze_encoder and self.trainable_layers is not None:
            problems.append("freeze_encoder and trainable_layers are exclusive; pick one "
                            "(--freeze_encoder is --trainable_layers=0 with the pooler frozen too)")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            problems.append("early_stopping_patience must be at least 1")
        if self.eval_every is not None and self.eval_every < 1:
            problems.append(f"eval_every must be at least 1, not {self.eval_every}")
        elif (self.eval_every is not None and self.steps_per_checkpoint >= 1
              and self.eval_every % self.steps_per_checkpoint):
            problems.append(
                f"eval_every={self.eval_every} must be a positive multiple of "
                f"steps_per_checkpoint={self.steps_per_checkpoint} (evaluation runs where a "
                "checkpoint is written, so that resuming keeps its history): pass "
                f"--steps_per_checkpoint={self.eval_every} (or a divisor of it), or an "
                f"--eval_every that is a multiple of {self.steps_per_checkpoint}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), not {self.dropout}")
        if self.cpu_devices is not None and self.cpu_devices < 1:
            problems.append(f"cpu_devices must be at least 1, not {self.cpu_devices}")
        if self.model_parallelism is not None:
            if self.model_parallelism < 1:
                problems.append(f"model_parallelism must be at least 1, not "
                                f"{self.model_parallelism}")
            if self.strategy != "model_parallel":
                problems.append(f"model_parallelism={self.model_parallelism} needs "
                                f"strategy=model_parallel, not {self.strategy!r}")
        if problems:
            raise ValueError("Invalid fine-tuning settings: " + "; ".join(problems) + ".")

    @classmethod
    def from_flags(
        cls, flag_values: flags.FlagValues | None = None, **overrides
    ) -> FinetuningConfig:
        """The config from parsed absl flags (those `define_flags` made), then `overrides`.

        With --eval_every and without --steps_per_checkpoint, checkpoints are written at
        every evaluation when the default checkpoint interval does not divide --eval_every
        (evaluations must fall on checkpoints).
        """
        flag_values = flags.FLAGS if flag_values is None else flag_values
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in flag_values:
                values[field.name] = flag_values[field.name].value
        values.update(overrides)
        every, interval = values.get("eval_every"), values.get("steps_per_checkpoint")
        chosen = "steps_per_checkpoint" in overrides or (
            "steps_per_checkpoint" in flag_values and flag_values["steps_per_checkpoint"].present)
        if every is not None and every >= 1 and interval and not chosen and every % interval:
            logging.info("--eval_every=%d: checkpointing at every evaluation (every %d steps, "
                         "not the default %d); pass --steps_per_checkpoint to choose",
                         every, every, interval)
            values["steps_per_checkpoint"] = every
        return cls(**values)


def define_flags(
    default_task: str | None = None,
    task_names: Sequence[str] | None = None,
    data_dir: str | None = None,
    init_checkpoint: str | None = None,
    output_dir: str = "runs/finetune",
    max_seq_length: int = 128,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    num_train_epochs: float = 3.0,
    steps_per_checkpoint: int = 500,
    flag_values: flags.FlagValues | None = None,
    task_flags: bool = True,
) -> None:
    """Defines the common absl flags of the fine-tuning scripts, with these defaults.

    `task_flags=False` leaves out --task, --data_dir and --tfds_name, for scripts that
    train on data of their own rather than fine-tune on a task (pretraining).
    """
    fv = flags.FLAGS if flag_values is None else flag_values
    if task_flags:
        if task_names:
            flags.DEFINE_enum("task", default_task, list(task_names), "Task to fine-tune on.",
                              flag_values=fv)
        else:
            flags.DEFINE_string("task", default_task, "Task to fine-tune on.", flag_values=fv)
        flags.DEFINE_string("data_dir", data_dir, "Folder with the task's data files.",
                            flag_values=fv)
    flags.DEFINE_string(
        "init_checkpoint", init_checkpoint,
        "Starting weights: a local Hugging Face BERT folder (config.json + safetensors), a Google "
        "BERT checkpoint folder (bert_config.json + bert_model.ckpt.*), a keras-llm .keras file, "
        "or a preset name (e.g. bert_tiny) for random initialisation.", flag_values=fv)
    flags.DEFINE_string("vocab_file", None,
                        "WordPiece vocab.txt; by default the one in --init_checkpoint's folder.",
                        flag_values=fv)
    flags.DEFINE_string("output_dir", output_dir,
                        "Checkpoints, TensorBoard logs (logs/), results.json and predictions.",
                        flag_values=fv)
    flags.DEFINE_integer("max_seq_length", max_seq_length,
                         "Tokens per example, [CLS]/[SEP] included; longer inputs are truncated.",
                         flag_values=fv)
    flags.DEFINE_integer("batch_size", batch_size,
                         "Global training batch size (split over the replicas).", flag_values=fv)
    flags.DEFINE_integer("eval_batch_size", 64, "Global evaluation batch size.", flag_values=fv)
    flags.DEFINE_float("learning_rate", learning_rate, "Peak AdamW learning rate.",
                       flag_values=fv)
    flags.DEFINE_float("num_train_epochs", num_train_epochs,
                       "Passes over the training data (ignored with --num_train_steps).",
                       flag_values=fv)
    flags.DEFINE_integer("num_train_steps", None, "Training steps in all (overrides epochs).",
                         flag_values=fv)
    flags.DEFINE_float("warmup_ratio", 0.1, "Share of the steps with linear warmup.",
                       flag_values=fv)
    flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay (not on LayerNorm or biases).",
                       flag_values=fv)
    flags.DEFINE_float("clip_norm", 1.0, "Global gradient-norm clip.", flag_values=fv)
    flags.DEFINE_integer("gradient_accumulation_steps", 1,
                         "Batches whose gradients are summed into one update.", flag_values=fv)
    flags.DEFINE_integer("steps_per_checkpoint", steps_per_checkpoint,
                         "Save a resumable checkpoint every this many steps.", flag_values=fv)
    flags.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                      "auto: MirroredStrategy over all GPUs if more than one, else default "
                      "(JAX: DataParallel over all devices); mirrored: data parallel over all "
                      "devices; multi_worker reads TF_CONFIG (TensorFlow); model_parallel "
                      "(JAX only): Megatron-style split of the attention and feed-forward "
                      "kernels over --model_parallelism devices, data parallel over the rest.",
                      flag_values=fv)
    flags.DEFINE_enum("mixed_precision", "float32", sorted(PRECISIONS),
                      "Compute dtype; float16 adds dynamic loss scaling.", flag_values=fv)
    flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                      "XLA-compile the train step.", flag_values=fv)
    flags.DEFINE_string("export_dir", None,
                        "If set, export a TF Serving SavedModel (raw strings in) here at the end.",
                        flag_values=fv)
    flags.DEFINE_integer("seed", 42, "Random seed (initialisation, dropout, shuffling).",
                         flag_values=fv)
    flags.DEFINE_integer("max_train_examples", None, "Use only the first N training examples.",
                         flag_values=fv)
    flags.DEFINE_integer("max_eval_examples", None, "Evaluate on the first N examples only.",
                         flag_values=fv)
    if task_flags:
        flags.DEFINE_string("tfds_name", None,
                            "Read the data from TensorFlow Datasets instead (e.g. glue/sst2).",
                            flag_values=fv)
    flags.DEFINE_bool("freeze_encoder", False, "Train the task head only.", flag_values=fv)
    flags.DEFINE_integer("trainable_layers", None,
                         "Train only the top N encoder layers, the pooler and the head.",
                         flag_values=fv)
    flags.DEFINE_integer("early_stopping_patience", None,
                         "Stop after this many evaluations without a better evaluation metric, "
                         "and restore the best weights.", flag_values=fv)
    flags.DEFINE_integer("eval_every", None,
                         "Evaluate (on the dev or held-out data) every N steps, by default only "
                         "at the end. A multiple of --steps_per_checkpoint; without that flag, "
                         "checkpoints are written at every evaluation if need be.",
                         flag_values=fv)
    flags.DEFINE_float("dropout", None,
                       "Dropout of the encoder and the head; by default the checkpoint's.",
                       flag_values=fv)
    flags.DEFINE_bool("remat", False,
                      "Recompute each encoder block's activations in the backward pass "
                      "(gradient checkpointing): far less memory for long sequences or large "
                      "batches, about a third more compute, the same gradients.",
                      flag_values=fv)
    flags.DEFINE_integer("cpu_devices", None,
                         "Split the CPU into N logical devices, so that --strategy=mirrored "
                         "runs N replicas without GPUs (for testing distribution).",
                         flag_values=fv)
    flags.DEFINE_integer("model_parallelism", None,
                         "--strategy=model_parallel: devices each model is split over (the "
                         "mesh's model axis; default all); the other devices hold data-"
                         "parallel replicas. Must divide the device count.", flag_values=fv)


class FinetuningRun:
    """One fine-tuning run: the strategy, the model, training with resume, results, export.

    Args:
        config: the run's settings.
        primary_metric: the metric (a key of `evaluate`'s dict) early stopping
            watches; larger is better.

    Example:
    >>> import tempfile
    >>> run = FinetuningRun(FinetuningConfig(init_checkpoint="bert_tiny",
    ...                                      output_dir=tempfile.mkdtemp()))
    >>> run.num_replicas >= 1
    True
    """

    def __init__(self, config: FinetuningConfig, primary_metric: str | None = None,
                 layout: str = "Bert"):
        self.config = config
        self.primary_metric = primary_metric
        if config.cpu_devices:
            split_cpu(config.cpu_devices)
        keras.utils.set_random_seed(config.seed)
        set_mixed_precision(config.mixed_precision)
        # `layout`: the backbone family whose layout map --strategy=model_parallel uses.
        self.strategy, self.num_replicas = make_strategy(
            config.strategy, model_parallelism=config.model_parallelism, layout=layout)
        distribution = (keras.distribution.distribution()
                        if config.strategy == "model_parallel" else None)
        # Devices each copy of the model is split over (the mesh's model axis).
        self.model_parallelism = 1 if distribution is None else distribution.device_mesh.shape[1]
        if config.export_dir and keras.backend.backend() != "tensorflow":
            logging.warning(
                "--export_dir: the SavedModel export needs the TensorFlow backend; this %s run "
                "will skip it. Export the saved model.keras afterwards with KERAS_BACKEND="
                "tensorflow python -m keras_llm.export --model=... --export_dir=%s",
                keras.backend.backend(), config.export_dir)
        if config.strategy == "multi_worker":
            reduce_scalar_logs_across_workers()
        self.chief = is_chief()
        # Non-chief workers of a multi-worker run write to a scratch folder, so only one process
        # writes each file that the run keeps.
        self.output_dir = (config.output_dir if self.chief
                           else tempfile.mkdtemp(prefix="keras_llm_worker_"))
        os.makedirs(self.output_dir, exist_ok=True)
        self.checkpoint_dir = os.path.join(config.output_dir, "checkpoints")
        self.total_steps: int | None = None
        self.steps_per_checkpoint = config.steps_per_checkpoint
        if config.batch_size % self.num_replicas:
            raise ValueError(f"batch_size={config.batch_size} must divide evenly over "
                             f"{self.num_replicas} replicas.")
        logging.info("fine-tuning on %d replica(s)%s, %s", self.num_replicas,
                     f", each split over {self.model_parallelism} devices"
                     if self.model_parallelism > 1 else "", keras.config.dtype_policy().name)

    def scope(self) -> contextlib.AbstractContextManager:
        """A fresh strategy scope (each can be entered once) for building variables."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    # --- Model and preprocessing -----------------------------------------------------------
    def checkpoint_kind(self) -> str:
        """What --init_checkpoint names: `"keras"` (a .keras file), `"path"` (another file or
        folder that exists) or `"preset"` (a Bert preset name, random weights).

        Raises:
            ValueError: --init_checkpoint is not set.
            FileNotFoundError: it is neither an existing file or folder nor a preset; the
                message lists the presets.
        """
        from keras_llm.models import list_presets

        path = self.config.init_checkpoint
        presets = list_presets("Bert")
        if not path:
            raise ValueError("Pass --init_checkpoint: a Hugging Face or Google BERT folder, a "
                             f".keras file, or one of the presets {presets}.")
        if path.endswith(".keras"):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"--init_checkpoint {path} does not exist.")
            return "keras"
        if os.path.exists(path):
            return "path"
        if path in presets:
            return "preset"
        raise FileNotFoundError(
            f"--init_checkpoint {path!r} is neither an existing file or folder nor a preset "
            f"({', '.join(presets)}). Pass a Hugging Face or Google BERT folder, a .keras file, "
            "or one of those preset names.")

    def vocabulary_path(self) -> str:
        """The WordPiece vocabulary: --vocab_file, else the one beside --init_checkpoint.

        --init_checkpoint is checked first (`checkpoint_kind`), so that a wrong checkpoint is
        reported as such rather than as a missing vocabulary.
        """
        checkpoint, vocab_file = self.config.init_checkpoint, self.config.vocab_file
        kind = self.checkpoint_kind() if checkpoint or not vocab_file else None
        if vocab_file:
            if not os.path.isfile(vocab_file):
                raise FileNotFoundError(f"--vocab_file {vocab_file} does not exist; pass the "
                                        "path of a WordPiece vocab.txt (one token a line).")
            return vocab_file
        if kind == "preset":
            raise FileNotFoundError(
                f"--init_checkpoint={checkpoint} is a preset (random weights) and brings no "
                "vocabulary: pass --vocab_file=/path/to/vocab.txt.")
        folder = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint) or "."
        candidate = os.path.join(folder, "vocab.txt")
        if os.path.isfile(candidate):
            return candidate
        where = (f"the --init_checkpoint folder {checkpoint}" if os.path.isdir(checkpoint)
                 else f"the folder of --init_checkpoint {checkpoint}")
        raise FileNotFoundError(
            f"No WordPiece vocabulary: {where} has no vocab.txt (looked for {candidate}). Pass "
            "--vocab_file=/path/to/vocab.txt, or an --init_checkpoint folder that holds vocab.txt.")

    def load_preprocessor(self, sequence_length: int | None = None,
                          **kwargs: Any) -> BertPreprocessor:
        """A `BertPreprocessor` over the run's vocabulary, packing to `max_seq_length`."""
        from keras_llm.tokenizers import BertPreprocessor, WordPieceTokenizer

        path = self.vocabulary_path()
        if os.path.basename(path) == "vocab.txt":
            tokenizer = WordPieceTokenizer.from_pretrained(os.path.dirname(path) or ".")
        else:
            tokenizer = WordPieceTokenizer(path)
        self.preprocessor = BertPreprocessor(
            tokenizer, sequence_length=sequence_length or self.config.max_seq_length, **kwargs)
        return self.preprocessor

    def load_model(self, task_class: type[_TaskT], vocab_size: int | None = None,
                   **task_kwargs: Any) -> _TaskT:
        """Builds `task_class` from --init_checkpoint under the strategy scope, then freezes.

        A preset name gives a randomly initialised backbone whose vocabulary is
        `vocab_size` (by default that of the loaded preprocessor).
        """
        from keras_llm.models import Bert

        path = self.config.init_checkpoint
        kind = self.checkpoint_kind()
        dropout = self.config.dropout
        backbone_overrides = {} if dropout is None else {"dropout": dropout}
        if self.config.remat:
            backbone_overrides["remat"] = True
        if dropout is not None and "dropout" in inspect.signature(task_class).parameters:
            task_kwargs.setdefault("dropout", dropout)
        with self.scope():
            if kind == "keras":
                model = keras.models.load_model(path)
                if not isinstance(model, task_class):
                    raise TypeError(f"{path} holds a {type(model).__name__}, not a "
                                    f"{task_class.__name__}.")
                if self.config.remat:
                    model.backbone.remat = True
            elif kind == "path":
                model = task_class.from_pretrained(path, backbone_kwargs=backbone_overrides,
                                                   **task_kwargs)
            else:
                if vocab_size is None:
                    preprocessor = getattr(self, "preprocessor", None) or self.load_preprocessor()
                    vocab_size = preprocessor.tokenizer.vocabulary_size()
                backbone = Bert.from_preset(
                    path, vocab_size=vocab_size,
                    max_sequence_length=max(512, self.config.max_seq_length),
                    **backbone_overrides)
                model = task_class(backbone, **task_kwargs)
                model.build({"token_ids": (None, None)})  # Variables now, under the scope.
        set_trainable_layers(model, self.config.freeze_encoder, self.config.trainable_layers)
        if self.strategy is not None:
            build_from_first_replica(model)
        if keras.backend.backend() == "jax" and self.num_replicas > 1:
            predict_with_padded_batches(model, self.num_replicas)
        return model

    # --- Optimisation ----------------------------------------------------------------------
    def plan_steps(self, num_train_examples: int) -> int:
        """Training steps in all: --num_train_steps, or epochs over the examples, rounded up to
        a whole number of checkpoint intervals (a run always stops on a checkpoint)."""
        config = self.config
        if config.num_train_steps:
            steps = config.num_train_steps
        else:
            if num_train_examples < 1:
                raise ValueError("There are no training examples.")
            steps = math.ceil(config.num_train_epochs * num_train_examples / config.batch_size)
        self.steps_per_checkpoint = min(config.steps_per_checkpoint, steps)
        if config.eval_every:
            self.steps_per_checkpoint = math.gcd(self.steps_per_checkpoint, config.eval_every)
        total = math.ceil(steps / self.steps_per_checkpoint) * self.steps_per_checkpoint
        if total != steps:
            logging.info("training for %d steps (%d rounded up to whole checkpoint intervals)",
                         total, steps)
        self.total_steps = total
        return total

    def compile(self, model: keras.Model, loss, num_train_examples: int, metrics=None,
                weighted_metrics=None, loss_weights=None) -> None:
        """AdamW with linear warmup and linear decay to zero (the BERT recipe), under the scope."""
        config = self.config
        total = self.plan_steps(num_train_examples)
        updates = max(total // config.gradient_accumulation_steps, 1)
        schedule = WarmupDecay(config.learning_rate, updates,
                               int(config.warmup_ratio * updates), decay="linear")
        jit = {"auto": _xla_pays_off(), "true": True, "false": False}[config.jit_compile.lower()]
        with self.scope():
            model.compile(
                optimizer=create_adamw(
                    schedule, weight_decay=config.weight_decay, global_clipnorm=config.clip_norm,
                    gradient_accumulation_steps=(config.gradient_accumulation_steps
                                                 if config.gradient_accumulation_steps > 1
                                                 else None)),
                loss=loss, metrics=metrics, weighted_metrics=weighted_metrics,
                loss_weights=loss_weights, jit_compile=jit,
            )

    def fit(self, model: keras.Model, train_dataset: tf.data.Dataset,
            evaluate: Evaluate | None = None, callbacks: Sequence[keras.callbacks.Callback] = (),
            verbose: str | int = "auto") -> dict:
        """Trains for the planned steps, resuming from the output folder's checkpoints.

        `train_dataset` must be deterministic and batched with the global batch
        size: build it with `keras_llm.data.pipeline.shuffle_epochs(examples, seed)`.
        `evaluate(model)` runs every `eval_every` steps and at the end; its
        history survives restarts (`eval_history.json`).
        With early stopping, training stops after `early_stopping_patience`
        evaluations without a better `primary_metric`, and the best weights are
        restored.
        """
        if self.total_steps is None:
            raise RuntimeError("Call run.compile(model, ...) before run.fit(...).")
        monitor = EvaluationMonitor(
            evaluate, os.path.join(self.output_dir, "evaluation"),
            every=self.config.eval_every, total_steps=self.total_steps,
            steps_per_checkpoint=self.steps_per_checkpoint,
            patience=self.config.early_stopping_patience, primary_metric=self.primary_metric)
        all_callbacks = [
            monitor,
            LearningRateLogger(),
            keras.callbacks.TensorBoard(os.path.join(self.output_dir, "logs")),
            *callbacks,
        ]
        start = time.time()
        if monitor.stopped:  # An early-stopped run that was restarted: nothing left to train.
            logging.info("this run stopped early before; restoring its best weights")
            sample = next(iter(train_dataset.take(1)))
            model(sample[0] if isinstance(sample, tuple) else sample)
            with variable_scope(model):
                model.optimizer.build(model.trainable_variables)
            history, resumed_from = None, monitor.last_step
        else:
            history, resumed_from = fit_resumable(
                model, train_dataset, self.total_steps, self.checkpoint_dir,
                self.steps_per_checkpoint, callbacks=all_callbacks, verbose=verbose,
                save=self.chief)
        seconds = time.time() - start
        if not monitor.history and evaluate is not None:
            monitor.record(model, self.total_steps)  # A run that was already complete.
        monitor.restore_best(model)
        losses = history.history.get("loss", []) if history is not None else []
        return {
            "train_steps": self.total_steps,
            "resumed_from_step": resumed_from,
            "stopped_at_step": monitor.last_step or self.total_steps,
            "train_seconds_this_run": round(seconds, 1),
            "final_train_loss": float(losses[-1]) if losses else None,
            "train_loss_history": [float(x) for x in losses],
            "eval_history": monitor.history,
            "best_step": monitor.best_step,
            "num_replicas": self.num_replicas,
            "model_parallelism": self.model_parallelism,
            "global_batch_size": self.config.batch_size,
        }

    # --- Outputs ---------------------------------------------------------------------------
    def write_results(self, results: dict[str, Any]) -> str:
        """Writes `results.json` (results plus the run's settings) and prints it."""
        content = {**results, "config": dataclasses.asdict(self.config)}
        path = os.path.join(self.output_dir, "results.json")
        _write_json(path, content)
        print(json.dumps(results, indent=2, default=str))
        return path

    def export(self, model: keras.Model, preprocessor: keras.layers.Layer | None = None,
               **kwargs: Any) -> str | None:
        """Exports a TF Serving SavedModel to --export_dir (chief only); returns its folder.

        The export traces the model and its in-graph preprocessor with TensorFlow, so
        on another backend it is skipped (with a warning naming the command that
        exports the saved `.keras` file) and `None` is returned.
        """
        if not self.config.export_dir or not self.chief:
            return None
        if keras.backend.backend() != "tensorflow":
            logging.warning(
                "Skipping --export_dir=%s: the SavedModel export needs the TensorFlow backend "
                "and this run uses %s. Save the model (model.keras) and export it with "
                "KERAS_BACKEND=tensorflow python -m keras_llm.export --model=<model.keras> "
                "--export_dir=%s --vocabulary=<vocab.txt>.", self.config.export_dir,
                keras.backend.backend(), self.config.export_dir)
            return None
        from keras_llm.export import export_saved_model

        version_dir = export_saved_model(model, self.config.export_dir,
                                         preprocessor=preprocessor, **kwargs)
        logging.info("exported %s", version_dir)
        return version_dir


def _xla_pays_off() -> bool | str:
    """`--jit_compile=auto`: XLA on accelerators; on a CPU, TensorFlow's XLA BERT train step
    measured twice as slow as the graph one here (MiniLM, batch 32 x 64)."""
    if keras.backend.backend() != "tensorflow":
        return "auto"
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def build_from_first_replica(model: keras.Model) -> None:
    """Makes Keras build a distributed model from one replica's sample batch.

    Keras (3.15, TensorFlow backend) builds a model made under a strategy from
    the replicas' *mean* sample batch: that fails for bool features under
    `MirroredStrategy` and for any nested batch under
    `MultiWorkerMirroredStrategy`. Only shapes matter for building, so the first
    local replica's batch serves. Patched on the instance, at the edge.
    """
    if not hasattr(model, "_maybe_symbolic_build") or not hasattr(model, "_symbolic_build"):
        return
    import tensorflow as tf

    def first_replica(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return model.distribute_strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if model._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(first_replica, next(batches))
                break
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = maybe_symbolic_build


def reduce_scalar_logs_across_workers() -> None:
    """Lets Keras' `fit` run under `MultiWorkerMirroredStrategy`.

    Keras (3.15, TensorFlow backend) averages each step's logs across workers
    with `strategy.reduce("MEAN", value, axis=0)`, which fails for the scalar
    loss and metrics. Scalars are averaged with `axis=None` instead; everything
    else goes to Keras unchanged.
    """
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_keras_llm_patch", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            def reduce(value):
                local = strategy.experimental_local_results(value)[0]
                axis = None if local.shape.rank == 0 else 0
                return strategy.reduce("MEAN", value, axis=axis)

            return tree.map_structure(reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica._keras_llm_patch = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def predict_with_padded_batches(model: keras.Model, replicas: int) -> None:
    """Lets `model.predict` take batches whose size does not divide over `replicas`.

    Keras (3.15, JAX backend) splits each batch over the data-parallel devices of
    `DataParallel`/`ModelParallel`, and JAX refuses a batch that does not divide
    (the last evaluation batch, say 3 examples over 2 devices). The patched
    `predict` pads each batch to a multiple of `replicas` with copies of its last
    example, runs `predict_on_batch`, and drops the padded rows, so the outputs are
    those of the examples given, in order. It takes a `tf.data.Dataset` (of
    features or `(features, labels)`) or arrays, like `predict`; progress bars and
    callbacks are not shown. Patched on the instance, at the edge.
    """
    import numpy as np
    from keras import tree

    def batches(x, batch_size, steps):
        if hasattr(x, "as_numpy_iterator"):  # tf.data, without importing TensorFlow here.
            for index, data in enumerate(x.as_numpy_iterator()):
                if steps is not None and index >= steps:
                    return
                yield keras.utils.unpack_x_y_sample_weight(data)[0]
            return
        x = tree.map_structure(np.asarray, x)
        total = tree.flatten(x)[0].shape[0]
        size = batch_size or 32
        for index, start in enumerate(range(0, total, size)):
            if steps is not None and index >= steps:
                return
            yield tree.map_structure(lambda a, s=start: a[s:s + size], x)

    def pad(array, missing):
        return np.concatenate([array, np.repeat(array[-1:], missing, axis=0)])

    def predict(x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        outputs = []
        for batch in batches(x, batch_size, steps):
            size = tree.flatten(batch)[0].shape[0]
            missing = -size % replicas
            if missing:
                batch = tree.map_structure(lambda a, m=missing: pad(a, m), batch)
            result = model.predict_on_batch(batch)
            outputs.append(tree.map_structure(lambda o, s=size: np.asarray(o)[:s], result))
        if not outputs:
            raise ValueError("predict() received no batches: the dataset is empty.")
        return tree.map_structure(lambda *parts: np.concatenate(parts), *outputs)

    model.predict = predict


def split_cpu(count: int) -> None:
    """Splits the CPU into `count` logical devices; must run before the backend uses a device.

    TensorFlow: logical CPU devices. JAX: `jax_num_cpu_devices` host devices, as
    `XLA_FLAGS=--xla_force_host_platform_device_count=N` makes them.
    """
    if keras.backend.backend() == "jax":
        import jax

        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError as error:
            if len(jax.devices("cpu")) != count:
                raise RuntimeError(
                    f"Could not split the CPU into {count} devices: JAX already started its "
                    "backend. Pass --cpu_devices before anything runs a JAX op, or set "
                    f"XLA_FLAGS=--xla_force_host_platform_device_count={count}.") from error
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise RuntimeError(f"Could not split the CPU into {count} devices: TensorFlow "
                               "already initialised its devices. Pass --cpu_devices before "
                               "anything runs a TensorFlow op.") from error


def set_trainable_layers(model: keras.Model, freeze_encoder: bool = False,
                         trainable_layers: int | None = None) -> None:
    """Freezes a task model's BERT backbone, wholly or all but its top `trainable_layers`.

    The head stays trainable. With `trainable_layers`, the embeddings and the
    lower encoder blocks are frozen; the top blocks and the pooler train.
    Frozen weights are excluded from the optimizer, so they stay bit-identical.
    """
    if not freeze_encoder and trainable_layers is None:
        return
    backbone = getattr(model, "backbone", None)
    blocks = getattr(backbone, "encoder_blocks", None)
    if blocks is None:
        raise ValueError(f"{type(model).__name__} has no BERT encoder to freeze.")
    if freeze_encoder:
        backbone.trainable = False
        return
    if trainable_layers > len(blocks):
        raise ValueError(f"trainable_layers={trainable_layers}, but the encoder has only "
                         f"{len(blocks)} layers.")
    backbone.embeddings.trainable = False
    for index, block in enumerate(blocks):
        block.trainable = index >= len(blocks) - trainable_layers


class EvaluationMonitor(keras.callbacks.Callback):
    """Evaluates at checkpoint boundaries, logs to the progress bar and TensorBoard, keeps the
    best weights and stops early. Its state lives in `directory`, so a resumed run goes on
    with the same history, best score and patience."""

    def __init__(self, evaluate: Evaluate | None, directory: str, every: int | None,
                 total_steps: int, steps_per_checkpoint: int, patience: int | None = None,
                 primary_metric: str | None = None):
        super().__init__()
        self.evaluate = evaluate
        self.directory = directory
        self.every = every
        self.total_steps = total_steps
        self.steps_per_checkpoint = steps_per_checkpoint
        self.patience = patience
        self.primary_metric = primary_metric
        self.state_path = os.path.join(directory, "eval_history.json")
        self.best_path = os.path.join(directory, "best.weights.h5")
        state = {"history": [], "best_step": None, "best_value": None, "stopped": False}
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                state = json.load(f)
        self.history: list[dict] = state["history"]
        self.best_step: int | None = state["best_step"]
        self.best_value: float | None = state["best_value"]
        self.stopped: bool = state.get("stopped", False)
        if patience is not None and evaluate is None:
            raise ValueError("Early stopping needs an evaluation function.")

    @property
    def last_step(self) -> int | None:
        return self.history[-1]["step"] if self.history else None

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_checkpoint
        if self.evaluate is None or (self.last_step is not None and step <= self.last_step):
            return
        due = step >= self.total_steps or (self.every is not None and step % self.every == 0)
        if not due:
            return
        metrics = self.record(self.model, step)
        if logs is not None:
            logs.update({f"dev_{k}": v for k, v in metrics.items()
                         if isinstance(v, (int, float))})
        if self.patience is not None and self.best_step is not None:
            evaluations_since_best = sum(1 for h in self.history if h["step"] > self.best_step)
            if evaluations_since_best >= self.patience:
                logging.info("early stopping at step %d: no better %s for %d evaluations "
                             "(best %.4f at step %d)", step, self.primary_metric,
                             self.patience, self.best_value, self.best_step)
                self.model.stop_training = True
                self.stopped = True
                self._save_state()

    def record(self, model: keras.Model, step: int) -> dict:
        metrics = {k: (float(v) if isinstance(v, (int, float)) else v)
                   for k, v in self.evaluate(model).items()}
        logging.info("step %d: dev %s", step, metrics)
        self.history.append({"step": step, **metrics})
        if self.patience is not None:
            if self.primary_metric not in metrics:
                raise KeyError(f"Early stopping watches {self.primary_metric!r}, but the "
                               f"evaluation returned only {sorted(metrics)}.")
            value = metrics[self.primary_metric]
            if self.best_value is None or value > self.best_value:
                self.best_value, self.best_step = value, step
                os.makedirs(self.directory, exist_ok=True)
                temporary = self.best_path + ".tmp.weights.h5"
                model.save_weights(temporary)
                os.replace(temporary, self.best_path)
        self._save_state()
        return metrics

    def _save_state(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        _write_json(self.state_path, {"history": self.history, "best_step": self.best_step,
                                      "best_value": self.best_value, "stopped": self.stopped})

    def restore_best(self, model: keras.Model) -> None:
        """Loads the best weights when early stopping kept them and they differ from the last."""
        if self.patience is None or self.best_step is None:
            return
        if self.best_step != self.last_step:
            logging.info("restoring the best weights (step %d, %s=%.4f)", self.best_step,
                         self.primary_metric, self.best_value)
            model.load_weights(self.best_path)

