"""Training that a kill does not lose: step-exact checkpoints and resumption.

`fit_resumable` trains for a number of *steps*, saving the model and optimizer
state (and the step) every `steps_per_checkpoint` steps. Restarted with the same
arguments after a crash or a kill, it reloads the last checkpoint, skips the
batches already seen (the input pipeline must be deterministic: a fixed shuffle
seed), and carries on, so the run ends where an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras
from absl import flags

if TYPE_CHECKING:
    import tensorflow as tf

    from keras_llm.models.backbone import Tensor

_STATE_FILE = "checkpoint_state.json"


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the logs (progress bar, TensorBoard).

    Example:
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.AdamW(learning_rate=3e-4), "mse")
    >>> history = model.fit(np.ones((4, 2)), np.ones((4, 1)), batch_size=2, verbose=0,
    ...                     callbacks=[LearningRateLogger()])
    >>> round(history.history["learning_rate"][0], 6)
    0.0003
    """

    def _add(self, logs):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate
            ))

    def on_train_batch_end(self, batch, logs=None):
        self._add(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._add(logs)


class StepCheckpoint(keras.callbacks.Callback):
    """Saves weights and optimizer state every `every` steps (atomically), keeping `keep`.

    The step counted is `initial_step` plus the batches trained in this run.
    `fit_resumable` uses it; `restore_latest` reads what it wrote.

    Example:
    >>> import os, tempfile, keras, numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("adamw", "mse")
    >>> directory = tempfile.mkdtemp()
    >>> history = model.fit(np.ones((8, 2)), np.ones((8, 1)), batch_size=2, verbose=0,
    ...                     callbacks=[StepCheckpoint(directory, every=2, keep=2)])
    >>> sorted(os.listdir(directory))
    ['checkpoint_state.json', 'ckpt-2.weights.h5', 'ckpt-4.weights.h5']
    >>> read_checkpoint_state(directory)["latest"]
    'ckpt-4.weights.h5'
    """

    def __init__(self, directory: str, every: int, initial_step: int = 0, keep: int = 2,
                 save: bool = True):
        super().__init__()
        self.enabled = save
        self.directory = directory
        self.every = every
        self.step = initial_step
        self.keep = keep

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            self.save()

    def on_train_end(self, logs=None):
        state = read_checkpoint_state(self.directory)
        if state is None or state["step"] != self.step:
            self.save()

    def save(self) -> None:
        if not self.enabled:  # A non-chief worker: the chief writes the shared checkpoint.
            return
        os.makedirs(self.directory, exist_ok=True)
        name = f"ckpt-{self.step}.weights.h5"
        temporary = os.path.join(self.directory, f".{name}.tmp.weights.h5")
        self.model.save_weights(temporary)
        os.replace(temporary, os.path.join(self.directory, name))
        state = read_checkpoint_state(self.directory) or {"checkpoints": []}
        checkpoints = [c for c in state["checkpoints"] if c != name] + [name]
        for old in checkpoints[: -self.keep]:
            path = os.path.join(self.directory, old)
            if os.path.exists(path):
                os.remove(path)
        _write_json(os.path.join(self.directory, _STATE_FILE),
                    {"step": self.step, "latest": name, "checkpoints": checkpoints[-self.keep:]})


def _write_json(path: str, content: dict) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        json.dump(content, f)
    os.replace(temporary, path)  # A kill mid-write leaves the old state intact.


def read_checkpoint_state(directory: str) -> dict | None:
    """`{"step", "latest", "checkpoints"}` of the newest checkpoint, or `None`."""
    path = os.path.join(directory, _STATE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, OSError) as error:
        raise ValueError(
            f"{path} is corrupt ({error}); delete {directory} to start over."
        ) from error


def restore_latest(model: keras.Model, directory: str,
                   sample_batch: dict[str, Tensor] | Tensor) -> int:
    """Loads the newest checkpoint in `directory` into a compiled `model`; returns its step.

    `sample_batch` (inputs of one batch) builds the model and its optimizer
    first, since loading needs their variables to exist.
    """
    state = read_checkpoint_state(directory)
    if state is None:
        return 0
    path = os.path.join(directory, state["latest"])
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{directory}/{_STATE_FILE} names {state['latest']}, which is missing; restore the "
            f"file or delete {directory} to start over."
        )
    model(sample_batch)
    with variable_scope(model):
        model.optimizer.build(model.trainable_variables)
        model.load_weights(path)
    return int(state["step"])


def variable_scope(model: keras.Model):
    """The tf.distribute scope the model was built in (optimizer slots must be made there)."""
    strategy = getattr(model, "_distribute_strategy", None)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def check_step_flags(total_steps: int, steps_per_checkpoint: int,
                     total_flag: str = "--num_train_steps",
                     checkpoint_flag: str = "--steps_per_checkpoint") -> None:
    """Checks a script's step flags before anything loads, naming the flags and the fix.

    `fit_resumable` needs `total_steps` to be a multiple of `steps_per_checkpoint` (so that
    every run stops on a checkpoint); a script calls this first with its own flag names.

    Example:
    >>> check_step_flags(100, 50)
    >>> try:
    ...     check_step_flags(5, 50)
    ... except ValueError as error:
    ...     print(error)
    --num_train_steps=5 must be a multiple of --steps_per_checkpoint=50 (a run stops on a \
checkpoint): pass --steps_per_checkpoint=5 or --num_train_steps=50.
    """
    problems = [f"{flag} must be at least 1, not {value}"
                for flag, value in ((total_flag, total_steps),
                                    (checkpoint_flag, steps_per_checkpoint)) if value < 1]
    if problems:
        raise ValueError("; ".join(problems) + ".")
    if not total_steps % steps_per_checkpoint:
        return
    # The largest checkpoint interval up to the asked one that divides the steps, and the
    # nearest step counts that the asked interval divides.
    divisor = max(d for d in range(1, min(total_steps, steps_per_checkpoint) + 1)
                  if total_steps % d == 0)
    down = total_steps // steps_per_checkpoint * steps_per_checkpoint
    up = down + steps_per_checkpoint
    fixes = [f"{checkpoint_flag}={divisor}"] if divisor > 1 or total_steps == 1 else []
    fixes.append(f"{total_flag}={up}" if not down else f"{total_flag}={down} or {up}")
    raise ValueError(
        f"{total_flag}={total_steps} must be a multiple of {checkpoint_flag}="
        f"{steps_per_checkpoint} (a run stops on a checkpoint): pass {' or '.join(fixes)}.")


def validate_step_flags(total_flag: str, checkpoint_flag: str = "steps_per_checkpoint",
                        flag_values: flags.FlagValues | None = None) -> None:
    """Makes absl refuse, as it parses the command line, step flags that `check_step_flags`
    rejects: a script fails with the message before it loads anything.

    `total_flag` and `checkpoint_flag` are flag names without dashes (already defined).
    """
    def validate(values: dict) -> bool:
        try:
            check_step_flags(values[total_flag], values[checkpoint_flag],
                             f"--{total_flag}", f"--{checkpoint_flag}")
        except ValueError as error:
            raise flags.ValidationError(str(error)) from None
        return True

    flags.register_multi_flags_validator(
        [total_flag, checkpoint_flag], validate,
        flag_values=flags.FLAGS if flag_values is None else flag_values)


def fit_resumable(
    model: keras.Model,
    train_batches: tf.data.Dataset,
    total_steps: int,
    checkpoint_dir: str,
    steps_per_checkpoint: int,
    validation_data: tf.data.Dataset | tuple | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: str | int = "auto",
    save: bool = True,
) -> tuple[keras.callbacks.History | None, int]:
    """Trains a compiled `model` for `total_steps` batches, resuming from `checkpoint_dir`.

    Args:
        train_batches: a deterministic `tf.data.Dataset` of batches (it is
            repeated; the first `step` batches are skipped on resumption).
        total_steps: batches to train on in all, across restarts.
        steps_per_checkpoint: checkpoint (and validate, and call epoch-end
            callbacks) every this many steps.
        save: write checkpoints (False on the non-chief workers of a multi-worker
            run, which only restore).

    Returns:
        `(history or None if nothing was left to train, step resumed from)`.
    """
    if total_steps % steps_per_checkpoint:
        raise ValueError(
            f"total_steps={total_steps} must be a multiple of steps_per_checkpoint="
            f"{steps_per_checkpoint}, so that every run stops on a checkpoint."
        )
    sample_inputs = next(iter(train_batches.take(1)))
    sample_inputs = sample_inputs[0] if isinstance(sample_inputs, tuple) else sample_inputs
    start_step = restore_latest(model, checkpoint_dir, sample_inputs)
    if start_step >= total_steps:
        return None, start_step
    epochs = math.ceil(total_steps / steps_per_checkpoint)
    initial_epoch = start_step // steps_per_checkpoint
    if start_step % steps_per_checkpoint:
        raise ValueError(
            f"The checkpoint in {checkpoint_dir} is at step {start_step}, not a multiple of "
            f"steps_per_checkpoint={steps_per_checkpoint}; resume with the flags of the first run."
        )
    batches = train_batches.repeat().skip(start_step)
    checkpoint = StepCheckpoint(checkpoint_dir, steps_per_checkpoint, initial_step=start_step,
                                save=save)
    history = model.fit(
        batches,
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_checkpoint,
        validation_data=validation_data,
        callbacks=[checkpoint, *callbacks],
        shuffle=False,  # The dataset's own seeded shuffle is what makes resuming exact.
        verbose=verbose,
    )
    return history, start_step
