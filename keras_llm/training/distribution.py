"""Choosing a distribution strategy and a mixed-precision policy from flags."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import keras

if TYPE_CHECKING:
    import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "model_parallel")
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
BATCH_AXIS = "batch"
MODEL_AXIS = "model"


def set_mixed_precision(name: str) -> str:
    """Sets the global Keras dtype policy for `float32`, `bfloat16` or `float16`.

    With `float16`, `model.compile` adds dynamic loss scaling by itself.
    """
    if name not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {sorted(PRECISIONS)}; got {name!r}.")
    keras.config.set_dtype_policy(PRECISIONS[name])
    return PRECISIONS[name]


def distribution_scope(
    name: str = "auto",
    model_parallelism: int | None = None,
    layout: str | type | Callable | None = None,
) -> tuple[contextlib.AbstractContextManager, int]:
    """A context in which to build the model, optimizer and metrics for strategy `name`.

    TensorFlow backend: `auto` mirrors over all visible GPUs (else the default
    strategy), `one_device` uses the first device, `mirrored` mirrors over all
    devices, `multi_worker` reads `TF_CONFIG` and uses
    `MultiWorkerMirroredStrategy`. JAX backend: `auto`/`mirrored` set
    `keras.distribution.DataParallel` over all devices; `model_parallel` sets
    `keras.distribution.ModelParallel` with the Megatron-style layout of `layout`
    (see `make_strategy`). Returns `(scope, num_replicas)`; a scope can be entered
    once (see `make_strategy`).
    """
    strategy, replicas = make_strategy(name, model_parallelism=model_parallelism, layout=layout)
    return (strategy.scope() if strategy is not None else contextlib.nullcontext()), replicas


def make_strategy(
    name: str = "auto",
    model_parallelism: int | None = None,
    layout: str | type | Callable | None = None,
) -> tuple[tf.distribute.Strategy | None, int]:
    """`(tf.distribute strategy, num_replicas)` for `name` on TensorFlow; `(None, n)` on
    other backends, where JAX data or model parallelism is set globally instead.

    `model_parallel` (JAX only) arranges the devices in a `(batch, model)` mesh whose
    model axis has `model_parallelism` devices (all of them by default) and sets
    `keras.distribution.ModelParallel` over it; `n` is then the size of the batch
    axis, the number of data-parallel replicas. Build the model afterwards: its
    variables are split as they are created.

    Args:
        name: one of `STRATEGIES`.
        model_parallelism: devices on the model axis (`model_parallel` only).
        layout: what to split, for `model_parallel`: a backbone family (`"Bert"`,
            `"Gpt"`, `"T5"`), a backbone class, or a callable taking the
            `DeviceMesh` and returning a `keras.distribution.LayoutMap`.

    Example:
    >>> make_strategy("one_device")[1]
    1
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}; got {name!r}.")
    if model_parallelism is not None and name != "model_parallel":
        raise ValueError(f"model_parallelism={model_parallelism} applies to "
                         f"--strategy=model_parallel only, not --strategy={name}.")
    backend = keras.backend.backend()
    if name == "model_parallel":
        if backend != "jax":
            raise ValueError(
                f"--strategy=model_parallel needs the JAX backend (keras.distribution."
                f"ModelParallel); this run uses {backend}. Run with KERAS_BACKEND=jax, or use "
                "--strategy=mirrored / multi_worker (data parallel) on TensorFlow.")
        distribution = model_parallel_distribution(model_parallelism, layout)
        keras.distribution.set_distribution(distribution)
        return None, distribution.num_model_replicas
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


def model_parallel_distribution(
    model_parallelism: int | None = None,
    layout: str | type | Callable | None = None,
    devices: list | None = None,
) -> keras.distribution.ModelParallel:
    """A `ModelParallel` distribution over a `("batch", "model")` mesh of `devices`.

    The model axis holds `model_parallelism` devices (default: all), the batch axis
    the rest. The layout comes from `keras_llm.models.layout.get_layout_map` for a
    backbone family or class, or from a callable `(device_mesh) -> LayoutMap`. A
    weight whose split dimension does not divide by its mesh axis raises a
    `ValueError` naming it when it is created.

    Example:
    >>> import keras
    >>> if keras.backend.backend() == "jax":
    ...     distribution = model_parallel_distribution(1, "Bert")
    """
    devices = list(keras.distribution.list_devices() if devices is None else devices)
    model_size = len(devices) if model_parallelism is None else model_parallelism
    if model_size < 1 or len(devices) % model_size:
        raise ValueError(
            f"model_parallelism={model_parallelism} must be a positive divisor of the "
            f"{len(devices)} device(s) ({', '.join(map(str, devices))}); the batch axis gets "
            "the rest. On a CPU, --cpu_devices=N (or XLA_FLAGS="
            "--xla_force_host_platform_device_count=N before JAX starts) makes N devices.")
    if layout is None:
        raise ValueError("model_parallel needs a layout: a backbone family ('Bert', 'Gpt', "
                         "'T5'), a backbone class, or a callable (device_mesh) -> LayoutMap.")
    mesh = keras.distribution.DeviceMesh(
        (len(devices) // model_size, model_size), [BATCH_AXIS, MODEL_AXIS], devices)
    if callable(layout) and not isinstance(layout, type):
        layout_map = layout(mesh)
    else:
        from keras_llm.models.layout import get_layout_map

        layout_map = get_layout_map(layout, mesh, model_axis=MODEL_AXIS, batch_axis=BATCH_AXIS)
    return CheckedModelParallel(layout_map=layout_map, batch_dim_name=BATCH_AXIS)


class CheckedModelParallel(keras.distribution.ModelParallel):
    """`keras.distribution.ModelParallel` that checks each weight against its layout.

    A dimension that does not divide by the mesh axis it is split over raises a
    `ValueError` naming the weight, its shape and the fix, where JAX would name
    neither.

    Example:
    >>> import keras
    >>> mesh = keras.distribution.DeviceMesh((1,), ["model"], ["cpu:0"])
    >>> layout_map = keras.distribution.LayoutMap(mesh)
    >>> layout_map[".*kernel"] = (None, "model")
    >>> distribution = CheckedModelParallel(layout_map=layout_map, batch_dim_name="model")
    """

    def get_variable_layout(self, variable):
        layout = super().get_variable_layout(variable)
        from keras_llm.models.layout import layout_problem

        problem = layout_problem(variable.path, variable.shape, layout.axes, self.device_mesh)
        if problem:
            raise ValueError(problem)
        return layout


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
