"""Choosing a distribution strategy and a mixed-precision policy from flags."""

from __future__ import annotations

import contextlib
import json
import os

import keras

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def set_mixed_precision(name: str) -> str:
    """Sets the global Keras dtype policy for `float32`, `bfloat16` or `float16`.

    With `float16`, `model.compile` adds dynamic loss scaling by itself.
    """
    if name not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {sorted(PRECISIONS)}; got {name!r}.")
    keras.config.set_dtype_policy(PRECISIONS[name])
    return PRECISIONS[name]


def distribution_scope(name: str = "auto"):
    """A context in which to build the model, optimizer and metrics for strategy `name`.

    TensorFlow backend: `auto` mirrors over all visible GPUs (else the default
    strategy), `one_device` uses the first device, `mirrored` mirrors over all
    devices, `multi_worker` reads `TF_CONFIG` and uses
    `MultiWorkerMirroredStrategy`. JAX backend: `auto`/`mirrored` set
    `keras.distribution.DataParallel` over all devices. Returns
    `(scope, num_replicas)`; a scope can be entered once (see `make_strategy`).
    """
    strategy, replicas = make_strategy(name)
    return (strategy.scope() if strategy is not None else contextlib.nullcontext()), replicas


def make_strategy(name: str = "auto"):
    """`(tf.distribute strategy, num_replicas)` for `name` on TensorFlow; `(None, n)` on
    other backends, where JAX data parallelism is set globally instead."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {name!r}.")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if name == "multi_worker":
            if "TF_CONFIG" not in os.environ:
                raise ValueError(
                    "--strategy=multi_worker needs the TF_CONFIG environment variable "
                    "(cluster and task); see the tf.distribute multi-worker guide."
                )
            json.loads(os.environ["TF_CONFIG"])  # Fail early on a malformed TF_CONFIG.
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
        elif name == "mirrored":
            strategy = tf.distribute.MirroredStrategy()
        elif name == "one_device":
            gpus = tf.config.list_logical_devices("GPU")
            strategy = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
        else:
            gpus = tf.config.list_logical_devices("GPU")
            strategy = (
                tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
            )
        return strategy, strategy.num_replicas_in_sync
    if backend == "jax" and name in ("auto", "mirrored"):
        devices = keras.distribution.list_devices()
        if len(devices) > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return None, len(devices)
    if name == "multi_worker":
        raise ValueError("--strategy=multi_worker needs the TensorFlow backend.")
    return None, 1

def is_chief() -> bool:
    """Whether this process writes the run's files: always, except on the non-chief workers
    of a multi-worker cluster (`TF_CONFIG`: the `chief` task, else worker 0)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    config = json.loads(raw)
    task = config.get("task", {})
    task_type, index = task.get("type", "worker"), int(task.get("index", 0))
    if task_type == "chief":
        return True
    has_chief = "chief" in config.get("cluster", {})
    return task_type == "worker" and index == 0 and not has_chief
