"""Helpers shared by the benchmark scripts: errors, timing, the environment, tables, JSON."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class BenchmarkError(RuntimeError):
    """A library failed (a wrong output, a NaN loss) or the settings cannot run; the script
    prints it and exits non-zero."""


# Distributions whose versions a result file records, when installed.
_DISTRIBUTIONS = (
    "keras",
    "keras-hub",
    "tensorflow",
    "jax",
    "jaxlib",
    "torch",
    "transformers",
    "numpy",
)


def comma_separated(value: str) -> list[str]:
    """`"a, b,,c"` -> `["a", "b", "c"]`."""
    return [part.strip() for part in value.split(",") if part.strip()]


def comma_separated_ints(value: str) -> list[int]:
    """`"1,16"` -> `[1, 16]`."""
    return [int(part) for part in comma_separated(value)]


def limit_tensorflow_gpu_memory() -> None:
    """Lets TensorFlow grow its GPU memory instead of taking all of it: the other libraries
    share the GPU (in this process or the next)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # Already initialised.
            pass


def is_installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


def time_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    """`(seconds, result)` of one call; `fn` must block until its result is on the host."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def summarize(seconds: Sequence[float], work: float) -> dict[str, float]:
    """Median/min/max of `work / seconds` (e.g. tokens per second) over repeated timings."""
    rates = [work / s for s in seconds]
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "median_seconds": statistics.median(seconds),
    }


def library_versions() -> dict[str, str]:
    """Versions of the installed frameworks this project benchmarks against, plus keras-llm."""
    versions = {}
    for name in _DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    import keras_llm

    versions["keras_llm"] = keras_llm.__version__
    return versions


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accelerator_names(backend: str) -> list[str]:
    """Names of the GPUs/TPUs the Keras backend sees; empty on a CPU-only machine."""
    names: list[str] = []
    if backend == "jax":
        import jax

        names = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
    elif backend == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            names.append(details.get("device_name", gpu.name))
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return names


def environment(backend: str) -> dict[str, Any]:
    """Backend, device, CPU and library versions, for a result file."""
    accelerators = accelerator_names(backend)
    return {
        "keras_backend": backend,
        "device": accelerators[0] if accelerators else cpu_name(),
        "device_type": "gpu" if accelerators else "cpu",
        "accelerators": accelerators,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": library_versions(),
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned columns (the first left-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    """Writes `data` as indented JSON, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path
