"""Peak memory of a BERT training step on the CPU, and whether it grows from step to step.

What is measured: a `BertClassifier` of the shape `--size` (random weights, 2 classes),
compiled with keras-llm's AdamW recipe (`keras_llm.training.create_adamw`: AdamW, global-norm
clipping), trains `--steps` steps (`train_on_batch`) on one fixed random batch of
`--batch_size` x `--sequence_length` tokens, all positions real (no padding). After every step
the script reads the process's memory:

- resident set size (`VmRSS` in `/proc/self/status`; `resource.getrusage` where there is no
  `/proc`) once the step has returned: what the process keeps between steps;
- the step's own peak resident size (`VmHWM`, reset before each step by writing `5` to
  `/proc/self/clear_refs`; where that is refused, the peak since the start);
- on the TensorFlow backend, the CPU allocator's bytes in use and their peak
  (`tf.config.experimental.get_memory_info("CPU:0")`, reset before each step), which counts
  tensors only (no code, no Python objects, no allocator slack);
- the step's wall-clock time (the first step includes tracing).

`tracemalloc` is not used: it sees Python's allocations, not TensorFlow's or XLA's.

Next to the measurements the script prints an analytic breakdown: bytes of the parameters,
the optimizer's variables (AdamW's two moments) and the gradients (one per trainable
parameter), counted from the built model and optimizer, and an estimate of the activations a
training step keeps for its backward pass (see `activation_estimate`, which lists the tensors
counted per encoder block).

Verdict: the resident size after step `--warmup_steps` is compared with the one after the last
step; a growth above the tolerance (the larger of `--growth_tolerance_mib` and
`--growth_tolerance_fraction` of the run's peak) is reported as `"grows"` (the script then
exits with status 1), otherwise `"stable"`. The per-step slope (least squares over the steps
after the warm-up) and, on TensorFlow, the change in the allocator's bytes in use between steps
(live tensors only) are reported as well. Why a tolerance: the first step traces the graph, and
for a few more steps the resident size still rises as the allocator's pool meets the peaks of
different op orders (two inter-op threads) and then stays at the largest pool needed so far.
Measured for bert_base at 1 x 512 over 40 steps (in `results/memory_cpu.json`): +184 MiB from
step 1 to step 16 in jumps of at most 38 MiB, then flat to step 40, while the live tensors
between steps stayed at 1.23-1.36 GiB with no trend. A leak adds on every step: one step's
activations are ~0.9 GiB per 512-token example here.

Several batch sizes (`--batch_sizes=1,2,4`) or rematerialization modes (`--remat=none,blocks`)
run one after the other, each in a fresh Python process (a process's peak resident size never
falls), and the summary fits `peak = a + b * batch` per configuration: `b` is the memory of one
more example, which extrapolates to `--target_batch_size` and gives the largest batch that fits
in `--memory_budget_gib` (the machine's RAM by default). `--append` adds the runs to those
already in `--output`.

Rematerialization (`--remat`):

- `none`: every activation the backward pass needs is kept.
- `blocks`: `Bert(remat=True)`: each encoder block's call goes through `keras.remat`
  (`keras_llm.layers.rematerialized_call`), so a step keeps one input per block and
  recomputes one block at a time during the backward pass (`tf.recompute_grad` on TensorFlow,
  `jax.checkpoint` on JAX). The gradients equal those
  without rematerialization, dropout included. On TensorFlow this is what makes bert_base
  train at 32 x 512 on a 24 GiB machine (0.15 instead of 0.86 GiB per example). On JAX's CPU
  backend it recomputes (the step is slower) but the peak did not fall (bert_base, 4 x 512:
  7.35 GiB against 7.28 GiB without).
- `scope`: the blocks are built inside `keras.RematScope(mode="list_of_layers")`. With Keras
  3.15 on TensorFlow this fails when the training step is traced: Keras hands the block's
  keyword arguments (`padding_mask`, `training`) to `tf.recompute_grad`, whose
  `custom_gradient` accepts keyword arguments only eagerly. The run is recorded as an error.

`--dropout=0` takes the layers' `keras.ops.dot_product_attention` path instead of the explicit
softmax with dropout, which keeps one `[batch, heads, seq, seq]` tensor per block instead of
about three (bert_base at 512 tokens: 0.64 instead of 0.86 GiB per example).

`--memory_limit_gib` caps each measuring process's address space (`RLIMIT_AS`): on a shared
machine an allocation past the cap fails (an out-of-memory error, or `std::bad_alloc` and an
abort) and the run is recorded as `"status": "out_of_memory"` instead of the kernel's OOM
killer stopping some other process. The cap counts virtual memory, which for TensorFlow is
well above the resident size (its thread stacks and allocator regions), so set it about twice
the resident peak you expect.

Run from the repository root (slow on a CPU: a bert_base step at 32 x 512 is ~10^13 FLOPs):

    KERAS_BACKEND=tensorflow nice python -m benchmarks.memory --batch_size=32 --remat=blocks
    python benchmarks/memory.py --size=bert_base --batch_sizes=1,2,4,8 --remat=none,blocks
    python -m benchmarks.memory --size=bert_tiny --batch_size=8 --sequence_length=128

A table is printed and every figure, the settings, library versions, backend and device are
written to `--output` (JSON).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # Run as `python benchmarks/memory.py`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    BenchmarkError,
    comma_separated,
    comma_separated_ints,
    environment,
    format_table,
    write_json,
)

DEFAULT_OUTPUT = "benchmarks/results/memory.json"
REMAT_MODES = ("none", "blocks", "scope")
MIB = 1 << 20
GIB = 1 << 30
# Fields of /proc/self/status read by `read_process_memory` (all in kB there).
_STATUS_FIELDS = ("VmRSS", "VmHWM", "VmSize", "VmPeak")


# Reading the process's memory.


def parse_proc_status(text: str) -> dict[str, int]:
    """The `Vm*` sizes of a `/proc/<pid>/status` text, in bytes.

    >>> parse_proc_status("Name:\\tpython\\nVmHWM:\\t  2048 kB\\nVmRSS:\\t 1024 kB\\n")
    {'VmHWM': 2097152, 'VmRSS': 1048576}
    """
    sizes = {}
    for number, line in enumerate(text.splitlines(), start=1):
        key, _, value = line.partition(":")
        if key not in _STATUS_FIELDS:
            continue
        parts = value.split()
        if len(parts) != 2 or parts[1] != "kB" or not parts[0].isdigit():
            raise ValueError(
                f"/proc/self/status line {number}: expected '{key}: <number> kB', got "
                f"{line!r}; this reader knows the Linux layout only."
            )
        sizes[key] = int(parts[0]) * 1024
    return sizes


def read_process_memory() -> dict[str, int | None]:
    """`{"rss", "peak_rss", "virtual", "peak_virtual"}` of this process right now, in bytes.

    `peak_rss` is the resident high-water mark since the last `reset_peak_rss()` (or the
    start); the virtual sizes are what `--memory_limit_gib` caps. Without `/proc` (not
    Linux), only `peak_rss` is known (from `getrusage`).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            sizes = parse_proc_status(f.read())
        return {
            "rss": sizes.get("VmRSS"),
            "peak_rss": sizes.get("VmHWM"),
            "virtual": sizes.get("VmSize"),
            "peak_virtual": sizes.get("VmPeak"),
        }
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is in kB on Linux and in bytes on macOS.
        peak = peak if sys.platform == "darwin" else peak * 1024
        return {"rss": None, "peak_rss": peak, "virtual": None, "peak_virtual": None}


def reset_peak_rss() -> bool:
    """Resets `VmHWM` to the current resident size (Linux 4.0+); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


class AllocatorStats:
    """Bytes in use and their peak in the backend's host allocator, where it reports them.

    TensorFlow reports its CPU allocator (`get_memory_info("CPU:0")`); JAX's CPU device
    reports nothing (`memory_stats()` is None), and then `available` is False, as for any
    other backend.

    >>> stats = AllocatorStats("numpy")
    >>> stats.available, stats.read()
    (False, None)
    """

    def __init__(self, backend: str):
        self.backend = backend
        self.available = False
        if backend == "tensorflow":
            import tensorflow as tf

            try:
                tf.config.experimental.get_memory_info("CPU:0")
                self.available = True
            except (ValueError, RuntimeError):
                pass
        elif backend == "jax":
            import jax

            self.available = jax.devices("cpu")[0].memory_stats() is not None

    def reset_peak(self) -> None:
        if self.available and self.backend == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats("CPU:0")

    def read(self) -> dict[str, int] | None:
        if not self.available:
            return None
        if self.backend == "tensorflow":
            import tensorflow as tf

            info = tf.config.experimental.get_memory_info("CPU:0")
            return {"current": int(info["current"]), "peak": int(info["peak"])}
        import jax

        stats = jax.devices("cpu")[0].memory_stats() or {}
        return {
            "current": int(stats.get("bytes_in_use", 0)),
            "peak": int(stats.get("peak_bytes_in_use", 0)),
        }


def limit_address_space(gib: float) -> None:
    """Caps this process's virtual address space (`RLIMIT_AS`) at `gib` GiB."""
    limit = int(gib * GIB)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and limit > hard:
        raise BenchmarkError(
            f"--memory_limit_gib={gib} is above this process's hard address-space limit "
            f"({hard / GIB:.1f} GiB); pass a smaller value."
        )
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def machine_memory_bytes() -> int | None:
    """Physical RAM in bytes (`sysconf` pages times page size), or None where unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


# The analytic breakdown.


def activation_estimate(
    batch_size: int,
    sequence_length: int,
    hidden_size: int,
    intermediate_size: int,
    num_heads: int,
    num_layers: int,
    dtype_bytes: int = 4,
    dropout: bool = True,
    remat: str = "none",
) -> dict[str, Any]:
    """Bytes of the activations a BERT training step keeps for its backward pass.

    A count of the tensors the TensorFlow gradient of one post-norm encoder block needs,
    in units of one `[batch, seq, hidden]` ("H"), `[batch, seq, intermediate]` ("I") and
    `[batch, heads, seq, seq]` ("A") tensor:

    - H, 10 (8 without dropout): the block input (the QKV kernel's gradient), the query,
      key and value heads (sliced copies, for the two attention einsums), the attention
      context (the output projection), the attention layer norm's input and output, the
      feed-forward layer norm's input, and the float keep mask of each of the two residual
      dropouts (`stateless_dropout` multiplies by it; the gradient needs only the mask).
    - I, 4: exact GELU `0.5 x (1 + erf(x / sqrt 2))` keeps `0.5 x`, `x / sqrt 2`,
      `1 + erf(...)`, and its output is the second dense layer's input.
    - A, 3 with dropout (the explicit softmax path: the probabilities for the softmax
      gradient, the dropout's keep mask, the dropped probabilities for the value einsum);
      1 without (`dot_product_attention` keeps its softmax output).

    Plus the embeddings' layer norm and dropout (4 H), and during the backward pass of one
    block a transient of its gradients (2 A + 2 I + 4 H). With `remat="blocks"` the step
    keeps only each block's input and recomputes one block at a time: `num_layers` H plus one
    block's activations plus the transient.

    These are estimates: TensorFlow's runtime frees tensors by reference count and may keep
    or fuse others; the benchmark measures the real figure next to it. Measured for bert_base
    at 512 tokens on TensorFlow's CPU runtime, the memory of one more example is 0.93x this
    estimate with dropout, 1.06x without and 1.06x with `remat="blocks"`.
    """
    if remat not in REMAT_MODES:
        raise ValueError(f"remat must be one of {REMAT_MODES}; received {remat!r}.")
    unit_h = batch_size * sequence_length * hidden_size * dtype_bytes
    unit_i = batch_size * sequence_length * intermediate_size * dtype_bytes
    unit_a = batch_size * num_heads * sequence_length * sequence_length * dtype_bytes
    per_block_units = {"H": 10 if dropout else 8, "I": 4, "A": 3 if dropout else 1}
    per_block = (
        per_block_units["H"] * unit_h + per_block_units["I"] * unit_i
        + per_block_units["A"] * unit_a
    )
    embeddings = 4 * unit_h
    transient = 2 * unit_a + 2 * unit_i + 4 * unit_h
    if remat == "none":  # "blocks" and "scope" both recompute one block at a time.
        kept = num_layers * per_block + embeddings
    else:
        kept = num_layers * unit_h + per_block + embeddings
    return {
        "per_block_units": per_block_units,
        "unit_bytes": {"H": unit_h, "I": unit_i, "A": unit_a},
        "per_block_bytes": per_block,
        "kept_bytes": kept,
        "transient_bytes": transient,
        "total_bytes": kept + transient,
        "per_example_bytes": (kept + transient) / batch_size,
    }


def state_breakdown(model, optimizer) -> dict[str, int]:
    """Bytes of the parameters, the optimizer's variables and the gradients, as built."""

    def variable_bytes(v) -> int:
        return math.prod(int(d) for d in v.shape) * _dtype_size(v.dtype)

    trainable = sum(variable_bytes(v) for v in model.trainable_variables)
    return {
        "parameters": sum(variable_bytes(v) for v in model.variables),
        "optimizer_variables": sum(variable_bytes(v) for v in optimizer.variables),
        "gradients": trainable,
    }


def run_estimate(run: dict[str, Any]) -> dict[str, Any]:
    """The analytic breakdown of a run from its record: the measured sizes of the states
    (`run["estimate"]["states_bytes"]`) and `activation_estimate` for its model and settings.
    Reports recompute it, so that runs appended later share one formula."""
    settings, model = run["settings"], run["model"]
    states = run["estimate"]["states_bytes"]
    activations = activation_estimate(
        settings["batch_size"], settings["sequence_length"], model["hidden_size"],
        model["intermediate_size"], model["num_heads"], model["num_layers"],
        dtype_bytes=_dtype_size(settings["dtype"].removeprefix("mixed_")),
        dropout=settings["dropout"] > 0,
        remat=settings["remat"],
    )
    return {
        "states_bytes": states,
        "activations": activations,
        "step_total_bytes": states["total"] + activations["total_bytes"],
    }


def _dtype_size(dtype) -> int:
    import numpy as np

    name = str(getattr(dtype, "name", dtype))
    if name == "bfloat16":
        return 2
    return np.dtype(name).itemsize


# Growth and scaling.


def least_squares_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Slope of the least-squares line through `(xs, ys)`; None for fewer than 2 points."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values but {len(ys)} y values.")
    if len(xs) < 2:
        return None
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def growth_verdict(
    rss_after_steps: Sequence[int], warmup_steps: int, tolerance_bytes: int
) -> dict[str, Any]:
    """Whether the resident size after each step grows once the warm-up steps are over.

    `rss_after_steps[i]` is the resident size after step `i + 1`. Compared: the size after
    step `warmup_steps` and after the last step (`growth_bytes`), and the least-squares slope
    over those steps (`slope_bytes_per_step`). `"grows"` when the growth exceeds
    `tolerance_bytes`, else `"stable"`.

    >>> growth_verdict([900, 1000, 1001, 1000], warmup_steps=2, tolerance_bytes=10)["verdict"]
    'stable'
    """
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be at least 1; received {warmup_steps}.")
    if len(rss_after_steps) <= warmup_steps:
        raise ValueError(
            f"{len(rss_after_steps)} steps measured; the growth check needs more than "
            f"warmup_steps={warmup_steps}. Pass --steps={warmup_steps + 2} or more."
        )
    if tolerance_bytes < 0:
        raise ValueError(f"tolerance_bytes must not be negative; received {tolerance_bytes}.")
    later = list(rss_after_steps[warmup_steps - 1:])
    steps = list(range(warmup_steps, warmup_steps + len(later)))
    growth = later[-1] - later[0]
    increases = [b - a for a, b in zip(later, later[1:], strict=False)]
    return {
        "from_step": warmup_steps,
        "to_step": steps[-1],
        "growth_bytes": growth,
        "max_step_increase_bytes": max(increases),
        "slope_bytes_per_step": least_squares_slope(steps, later),
        "tolerance_bytes": tolerance_bytes,
        "verdict": "grows" if growth > tolerance_bytes else "stable",
    }


def batch_scaling(
    runs: Sequence[dict[str, Any]], target_batch_size: int, budget_bytes: int | None
) -> dict[str, dict[str, Any]]:
    """Per configuration (`run_key`), the fit `peak_rss = intercept + slope * batch` over the
    runs that finished, its value at `target_batch_size`, and the largest batch whose
    predicted peak stays within `budget_bytes`."""
    by_mode: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run.get("status") == "ok":
            by_mode.setdefault(run_key(run), []).append(run)
    scaling = {}
    for mode, mode_runs in by_mode.items():
        batches = [r["settings"]["batch_size"] for r in mode_runs]
        peaks = [r["summary"]["peak_rss_bytes"] for r in mode_runs]
        slope = least_squares_slope(batches, peaks)
        if slope is None:
            continue
        intercept = statistics.fmean(peaks) - slope * statistics.fmean(batches)
        fit = {
            "batch_sizes": batches,
            "peak_rss_bytes": peaks,
            "per_example_bytes": slope,
            "intercept_bytes": intercept,
            "target_batch_size": target_batch_size,
            "predicted_peak_at_target_bytes": intercept + slope * target_batch_size,
            "budget_bytes": budget_bytes,
            "largest_batch_within_budget": None,
        }
        if budget_bytes is not None and slope > 0:
            # The epsilon keeps an exact fit (e.g. 35.0) from rounding down to 34.
            largest = math.floor((budget_bytes - intercept) / slope + 1e-9)
            fit["largest_batch_within_budget"] = max(0, largest)
        scaling[mode] = fit
    return scaling


# One measurement (one process).


def _random_batch(batch_size: int, sequence_length: int, vocab_size: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs = {
        "token_ids": rng.integers(1, vocab_size, (batch_size, sequence_length)).astype("int32"),
        "segment_ids": np.zeros((batch_size, sequence_length), "int32"),
        "padding_mask": np.ones((batch_size, sequence_length), "int32"),
    }
    labels = rng.integers(0, 2, (batch_size,)).astype("int32")
    return inputs, labels


def build_classifier(args: argparse.Namespace):
    """The `BertClassifier` of `args.size`; `--remat` decides how its blocks recompute."""
    import keras

    import keras_llm
    from keras_llm.models.presets import get_preset

    keras.utils.set_random_seed(args.seed)
    overrides: dict[str, Any] = {"dtype": args.dtype}
    if args.dropout is not None:
        overrides["dropout"] = args.dropout
    num_layers = get_preset("Bert", args.size)["num_layers"]
    scope: contextlib.AbstractContextManager = contextlib.nullcontext()
    if args.remat == "scope":
        # Sublayers inherit the scope's mode, but only layers with these names recompute.
        scope = keras.RematScope(
            mode="list_of_layers", layer_names=[f"encoder_block_{i}" for i in range(num_layers)]
        )
    with scope:
        backbone = keras_llm.models.Bert.from_preset(
            args.size, remat=args.remat == "blocks", **overrides)
    classifier = keras_llm.models.BertClassifier(backbone, num_classes=2)
    classifier.build()
    return classifier


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Builds the model, trains `args.steps` steps and records memory after each."""
    import keras
    import numpy as np

    from keras_llm.training import create_adamw

    backend = keras.backend.backend()
    if args.sequence_length > 512 and args.size.startswith("bert"):
        raise BenchmarkError(
            f"--sequence_length={args.sequence_length} exceeds BERT's 512 positions."
        )
    memory_at_start = read_process_memory()
    allocator = AllocatorStats(backend)
    classifier = build_classifier(args)
    backbone = classifier.backbone
    optimizer = create_adamw(args.learning_rate)
    optimizer.build(classifier.trainable_variables)
    jit_compile = {"true": True, "false": False, "auto": "auto"}[args.jit_compile]
    classifier.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    inputs, labels = _random_batch(
        args.batch_size, args.sequence_length, backbone.vocab_size, args.seed
    )
    states = state_breakdown(classifier, optimizer)
    states["total"] = sum(states.values())
    memory_built = read_process_memory()
    steps: list[dict[str, Any]] = []
    status, error = "ok", None
    for step in range(1, args.steps + 1):
        peak_resettable = reset_peak_rss()
        allocator.reset_peak()
        start = time.perf_counter()
        try:
            loss = classifier.train_on_batch(inputs, labels)
            loss = float(np.asarray(loss).reshape(-1)[0])
        except Exception as e:  # Recorded as the run's result; running out of memory is one.
            text = f"{type(e).__name__}: {e}".strip()
            out_of_memory = isinstance(e, MemoryError) or any(
                marker in text for marker in ("ResourceExhausted", "RESOURCE_EXHAUSTED", "OOM ")
            )
            status = "out_of_memory" if out_of_memory else "error"
            error = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())[:1000]
        seconds = time.perf_counter() - start
        memory = read_process_memory()
        if status != "ok":
            steps.append({"step": step, "seconds": seconds, "failed": True,
                          "rss_bytes": memory["rss"], "peak_rss_bytes": memory["peak_rss"]})
            print(f"  step {step}: {status} after {seconds:.1f} s: {error[:300]}", flush=True)
            break
        if not math.isfinite(loss):
            raise BenchmarkError(f"step {step} gave a non-finite loss ({loss}).")
        record = {
            "step": step,
            "seconds": seconds,
            "loss": loss,
            "rss_bytes": memory["rss"],
            "peak_rss_bytes": memory["peak_rss"],
            "virtual_bytes": memory["virtual"],
            "peak_virtual_bytes": memory["peak_virtual"],
            "peak_is_per_step": peak_resettable,
            "allocator": allocator.read(),
        }
        steps.append(record)
        print(
            f"  step {step}: {seconds:7.1f} s  loss {loss:.4f}  rss {_gib(memory['rss'])} GiB  "
            f"step peak {_gib(memory['peak_rss'])} GiB"
            + (f"  allocator peak {_gib(record['allocator']['peak'])} GiB"
               if record["allocator"] else ""),
            flush=True,
        )
    result: dict[str, Any] = {
        "status": status,
        "error": error,
        "settings": {
            "size": args.size,
            "batch_size": args.batch_size,
            "sequence_length": args.sequence_length,
            "steps": args.steps,
            "warmup_steps": args.warmup_steps,
            "dtype": args.dtype,
            "dropout": backbone.dropout,
            "dropout_override": args.dropout,
            "remat": args.remat,
            "jit_compile": bool(classifier.jit_compile),
            "optimizer": "keras_llm.training.create_adamw (AdamW, global_clipnorm=1.0)",
            "memory_limit_gib": args.memory_limit_gib,
            "seed": args.seed,
        },
        "model": {
            "num_layers": backbone.num_layers,
            "hidden_size": backbone.hidden_size,
            "intermediate_size": backbone.intermediate_size,
            "num_heads": backbone.num_heads,
            "vocab_size": backbone.vocab_size,
            "num_parameters": int(classifier.count_params()),
        },
        "estimate": {"states_bytes": states},
        "environment": {**environment(backend), "memory_bytes": machine_memory_bytes()},
        "memory_at_start": memory_at_start,
        "memory_after_build": memory_built,
        "steps": steps,
    }
    result["estimate"] = run_estimate(result)
    if status == "ok":
        result["summary"] = summarize_run(
            result, args.growth_tolerance_mib, args.growth_tolerance_fraction
        )
    return result


def growth_tolerance(peak_rss: int, tolerance_mib: float, tolerance_fraction: float) -> int:
    """Bytes of growth after the warm-up still called stable: the larger of a fixed
    allowance and a fraction of the run's peak resident size.

    The resident size tracks the largest pool the allocator has needed so far, and the peak
    of one step varies with the order in which two inter-op threads run its ops, so after
    the warm-up it still creeps up now and then (by up to ~150 MiB in all for bert_base at
    512 tokens, see the module docstring) before it levels off; a leak adds on every step.

    >>> growth_tolerance(4 * GIB, 64, 0.05) // MIB
    204
    """
    return int(max(tolerance_mib * MIB, tolerance_fraction * peak_rss))


def summarize_run(
    result: dict[str, Any], tolerance_mib: float, tolerance_fraction: float
) -> dict[str, Any]:
    """Peak, step time, growth verdict and measured-vs-estimated figures of one run, from its
    per-step records (so a report can recompute them with other tolerances)."""
    steps = result["steps"]
    warmup = result["settings"]["warmup_steps"]
    rss = [s["rss_bytes"] for s in steps]
    peak = max(s["peak_rss_bytes"] for s in steps)
    tolerance_bytes = growth_tolerance(peak, tolerance_mib, tolerance_fraction)
    timed = [s["seconds"] for s in steps[1:]] or [steps[0]["seconds"]]
    baseline = result["memory_after_build"]["rss"] or result["memory_at_start"]["peak_rss"]
    summary: dict[str, Any] = {
        "peak_rss_bytes": peak,
        "rss_after_build_bytes": baseline,
        "peak_over_build_bytes": peak - baseline,
        "first_step_seconds": steps[0]["seconds"],
        "median_step_seconds": statistics.median(timed),
        "rss_after_steps_bytes": rss,
        "growth": growth_verdict(rss, warmup, tolerance_bytes),
    }
    allocator = [s["allocator"] for s in steps if s["allocator"]]
    if allocator:
        summary["allocator_peak_bytes"] = max(a["peak"] for a in allocator)
        current = [a["current"] for a in allocator]
        summary["allocator_current_after_steps_bytes"] = current
        # Tensors alive between steps (no allocator slack): a leak of tensors shows here.
        summary["allocator_current_growth_bytes"] = current[-1] - current[warmup - 1]
    estimate = result["estimate"]
    # The step adds activations and gradients to what was resident once the model was built.
    added_estimate = estimate["activations"]["total_bytes"] + estimate["states_bytes"]["gradients"]
    summary["estimated_peak_over_build_bytes"] = added_estimate
    summary["measured_over_estimated"] = (peak - baseline) / added_estimate
    return summary


# Driving one or several measurements.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--size", default="bert_base", help="keras-llm Bert preset")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="one batch size (same as --batch_sizes=N)")
    parser.add_argument("--batch_sizes", type=comma_separated_ints, default=None,
                        help="several batch sizes, each measured in a fresh process "
                             "(default: 32)")
    parser.add_argument("--sequence_length", type=int, default=512)
    parser.add_argument("--steps", type=int, default=6, help="training steps per batch size")
    parser.add_argument("--warmup_steps", type=int, default=3,
                        help="the growth check starts after this step")
    parser.add_argument("--growth_tolerance_mib", type=float, default=64.0,
                        help="resident-size growth after the warm-up still called stable")
    parser.add_argument("--growth_tolerance_fraction", type=float, default=0.05,
                        help="... or this fraction of the run's peak resident size, if larger")
    parser.add_argument("--dtype", default="float32", help="dtype policy of the model")
    parser.add_argument("--dropout", type=float, default=None,
                        help="override the preset's dropout (0: the dot_product_attention path)")
    parser.add_argument("--remat", type=comma_separated, default="none",
                        help=f"comma-separated subset of {','.join(REMAT_MODES)}")
    parser.add_argument("--jit_compile", choices=("true", "false", "auto"), default="auto",
                        help="`jit_compile` of compile(); auto: no XLA for TensorFlow on a CPU")
    parser.add_argument("--learning_rate", type=float, default=2e-5)
    parser.add_argument("--memory_limit_gib", type=float, default=None,
                        help="address-space cap of each measuring process (RLIMIT_AS)")
    parser.add_argument("--memory_budget_gib", type=float, default=None,
                        help="RAM the batch-size extrapolation may use (default: all of it)")
    parser.add_argument("--target_batch_size", type=int, default=32,
                        help="batch size the per-example fit extrapolates to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON result file")
    parser.add_argument("--append", action="store_true",
                        help="add these runs to those already in --output (same model)")
    parser.add_argument("--report_only", action="store_true",
                        help="measure nothing: rebuild the report in --output from its runs "
                             "(e.g. with another --growth_tolerance_mib)")
    parser.add_argument("--child_output", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_size is not None and args.batch_sizes is not None:
        parser.error("pass --batch_size or --batch_sizes, not both")
    args.batch_sizes = (
        [args.batch_size] if args.batch_size is not None else args.batch_sizes or [32]
    )
    if min(args.batch_sizes) < 1 or args.sequence_length < 1:
        parser.error("--batch_sizes and --sequence_length must be positive integers")
    if args.warmup_steps < 1 or args.steps <= args.warmup_steps:
        parser.error(
            f"--steps={args.steps} must exceed --warmup_steps={args.warmup_steps} (at least 1) "
            "so that the growth check compares two steps after the warm-up"
        )
    unknown = sorted(set(args.remat) - set(REMAT_MODES))
    if unknown or not args.remat:
        parser.error(f"--remat must name some of {REMAT_MODES}; got {args.remat}")
    if args.memory_limit_gib is not None and args.memory_limit_gib <= 0:
        parser.error("--memory_limit_gib must be positive")
    if args.growth_tolerance_mib < 0 or args.growth_tolerance_fraction < 0:
        parser.error("--growth_tolerance_mib and --growth_tolerance_fraction must not be "
                     "negative")
    return args


def _child_main(args: argparse.Namespace) -> int:
    """Measures one (remat, batch size) in this process and writes its JSON."""
    args.batch_size = args.batch_sizes[0]
    args.remat = args.remat[0]
    if args.memory_limit_gib is not None:
        limit_address_space(args.memory_limit_gib)
    try:
        result = measure(args)
    except BenchmarkError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    write_json(args.child_output, result)
    return 0


def _run_child(args: argparse.Namespace, remat: str, batch_size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        child_output = Path(folder) / "run.json"
        command = [
            sys.executable, str(Path(__file__).resolve()),
            f"--size={args.size}", f"--batch_size={batch_size}",
            f"--sequence_length={args.sequence_length}", f"--steps={args.steps}",
            f"--warmup_steps={args.warmup_steps}",
            f"--growth_tolerance_mib={args.growth_tolerance_mib}",
            f"--growth_tolerance_fraction={args.growth_tolerance_fraction}",
            f"--dtype={args.dtype}",
            f"--remat={remat}", f"--jit_compile={args.jit_compile}",
            f"--learning_rate={args.learning_rate}", f"--seed={args.seed}",
            f"--child_output={child_output}",
        ]
        if args.dropout is not None:
            command.append(f"--dropout={args.dropout}")
        if args.memory_limit_gib is not None:
            command.append(f"--memory_limit_gib={args.memory_limit_gib}")
        print(f"{args.size}, batch {batch_size} x {args.sequence_length}, remat={remat}:",
              flush=True)
        # The child's stderr is passed through, and its end kept for the record.
        child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace")
        tail: collections.deque[str] = collections.deque(maxlen=40)
        for line in child.stderr:
            sys.stderr.write(line)
            tail.append(line.rstrip())
        returncode = child.wait()
        if child_output.exists():
            return json.loads(child_output.read_text(encoding="utf-8"))
        return failed_run(returncode, list(tail), args, remat, batch_size)


def failed_run(
    returncode: int, stderr_tail: list[str], args: argparse.Namespace, remat: str,
    batch_size: int,
) -> dict[str, Any]:
    """The record of a measuring process that died without writing its result.

    Killed by SIGKILL: most likely the kernel's OOM killer. Aborted on `std::bad_alloc`
    (or Python's `MemoryError`): an allocation outside TensorFlow's allocator failed, which
    under `--memory_limit_gib` means the cap was reached; both count as out of memory.
    """
    text = "\n".join(stderr_tail)
    if returncode in (-9, 137):
        status, why = "out_of_memory", "killed by SIGKILL (most likely the kernel's OOM killer)"
    elif "bad_alloc" in text or "MemoryError" in text:
        status, why = "out_of_memory", "an allocation failed (std::bad_alloc or MemoryError)"
    else:
        status, why = "failed", "the measuring process failed"
    last = [line for line in stderr_tail if line.strip()][-3:]
    return {
        "status": status,
        "error": f"{why}; exit status {returncode}; stderr ends: {' | '.join(last)}",
        "settings": {"size": args.size, "batch_size": batch_size,
                     "sequence_length": args.sequence_length, "remat": remat,
                     "dropout_override": args.dropout,
                     "memory_limit_gib": args.memory_limit_gib},
    }


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value / GIB:.2f}"


def table(runs: Sequence[dict[str, Any]]) -> str:
    headers = ("remat", "dropout", "batch x seq", "status", "peak RSS GiB", "over build GiB",
               "estimate GiB", "allocator peak GiB", "step s", "growth MiB", "verdict")
    rows = []
    for run in runs:
        s = run["settings"]
        shape = f"{s['batch_size']} x {s['sequence_length']}"
        dropout = s.get("dropout_override")
        first = (s["remat"], "default" if dropout is None else dropout, shape, run["status"])
        if run["status"] != "ok":
            rows.append(first + ("-",) * 7)
            continue
        summary = run["summary"]
        rows.append(first + (
            _gib(summary["peak_rss_bytes"]),
            _gib(summary["peak_over_build_bytes"]),
            _gib(summary["estimated_peak_over_build_bytes"]),
            _gib(summary.get("allocator_peak_bytes")),
            f"{summary['median_step_seconds']:.1f}",
            f"{summary['growth']['growth_bytes'] / MIB:+.1f}",
            summary["growth"]["verdict"],
        ))
    return format_table(headers, rows)


def breakdown_table(runs: Sequence[dict[str, Any]]) -> str:
    """The analytic breakdown next to the measurement, for the largest finished batch of
    each configuration."""
    largest: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run["status"] != "ok":
            continue
        key = run_key(run)
        if key not in largest or (
            run["settings"]["batch_size"] > largest[key]["settings"]["batch_size"]
        ):
            largest[key] = run
    columns = list(largest.values())
    names = [
        f"{run_key(r)}, {r['settings']['batch_size']} x {r['settings']['sequence_length']}"
        for r in columns
    ]

    def row(label: str, values: list) -> tuple:
        return (label, *[_gib(v) for v in values])

    states = [r["estimate"]["states_bytes"] for r in columns]
    activations = [r["estimate"]["activations"] for r in columns]
    rows = [
        row("parameters", [x["parameters"] for x in states]),
        row("optimizer variables (AdamW m, v)", [x["optimizer_variables"] for x in states]),
        row("gradients", [x["gradients"] for x in states]),
        row("activations kept for backward (estimate)", [a["kept_bytes"] for a in activations]),
        row("backward transient (estimate)", [a["transient_bytes"] for a in activations]),
        row("total (estimate)", [r["estimate"]["step_total_bytes"] for r in columns]),
        row("measured: allocator peak (tensors)",
            [r["summary"].get("allocator_peak_bytes") for r in columns]),
        row("measured: resident after build", [r["summary"]["rss_after_build_bytes"]
                                               for r in columns]),
        row("measured: peak resident", [r["summary"]["peak_rss_bytes"] for r in columns]),
    ]
    return format_table(("GiB", *names), rows)


def keras_backend_name() -> str:
    """The backend Keras will use (`KERAS_BACKEND`, else `~/.keras/keras.json`), read without
    importing Keras."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    config = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def run_key(run: dict[str, Any]) -> str:
    """The configuration a run measured, less its batch size: `remat=none, dropout=default`
    (the preset's dropout) or `remat=blocks, dropout=0.0` (`--dropout` given)."""
    settings = run["settings"]
    dropout = settings.get("dropout_override")
    return f"remat={settings['remat']}, dropout={'default' if dropout is None else dropout}"


def merge_runs(
    previous: dict[str, Any] | None, runs: list[dict[str, Any]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """`runs` added to those of an earlier report of the same model (`--append`); a new run
    replaces an earlier one of the same configuration and batch size."""
    if previous is None:
        return runs
    old = {**previous.get("settings", {}),
           "backend": (previous.get("environment") or {}).get("keras_backend")}
    new = {**vars(args), "backend": keras_backend_name()}
    for name in ("size", "sequence_length", "dtype", "backend"):
        if old.get(name) is not None and old.get(name) != new[name]:
            raise BenchmarkError(
                f"--append: {args.output} holds runs with {name}={old.get(name)!r}, these have "
                f"{name}={new[name]!r}; write them to another --output."
            )

    def key(run: dict[str, Any]) -> tuple[str, int]:
        return run_key(run), run["settings"]["batch_size"]

    replaced = {key(r) for r in runs}
    kept = [r for r in previous.get("runs", []) if key(r) not in replaced]
    # In the order the configurations were first measured, then by batch size.
    order = {k: i for i, k in reversed(list(enumerate(run_key(r) for r in kept + runs)))}
    return sorted(kept + runs, key=lambda r: (order[run_key(r)], r["settings"]["batch_size"]))


def build_report(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    budget = (
        int(args.memory_budget_gib * GIB) if args.memory_budget_gib is not None
        else machine_memory_bytes()
    )
    finished = [r for r in runs if r["status"] == "ok"]
    for run in finished:  # One formula and tolerance for every run, appended ones included.
        run["estimate"] = run_estimate(run)
        run["summary"] = summarize_run(
            run, args.growth_tolerance_mib, args.growth_tolerance_fraction
        )
    if any(r["summary"]["growth"]["verdict"] == "grows" for r in finished):
        verdict = "grows"
    else:
        verdict = "stable" if finished else "no run finished"
    environments = [r["environment"] for r in runs if "environment" in r]
    return {
        "benchmark": "memory",
        "description": (
            "resident memory of a BertClassifier training step (AdamW) on one fixed batch: "
            "after each step, each step's peak, growth across steps, and an analytic "
            "breakdown"
        ),
        "settings": {
            "size": args.size,
            "sequence_length": args.sequence_length,
            "dtype": args.dtype,
            "batch_sizes": sorted({r["settings"]["batch_size"] for r in runs}),
            "configurations": sorted({run_key(r) for r in runs}),
            "growth_tolerance_mib": args.growth_tolerance_mib,
            "growth_tolerance_fraction": args.growth_tolerance_fraction,
            "target_batch_size": args.target_batch_size,
            "memory_budget_bytes": budget,
        },
        "environment": environments[-1] if environments else None,
        "runs": runs,
        "scaling": batch_scaling(runs, args.target_batch_size, budget),
        # Whether the resident size grew across steps in any run that finished; runs that
        # ran out of memory or failed are listed apart.
        "verdict": verdict,
        "unfinished_runs": [
            {"configuration": run_key(r), "batch_size": r["settings"]["batch_size"],
             "status": r["status"], "error": r.get("error")}
            for r in runs if r["status"] != "ok"
        ],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.child_output is not None:
        return _child_main(args)
    # This process imports no framework: each measurement runs in a fresh child process.
    previous = None
    if (args.append or args.report_only) and Path(args.output).exists():
        previous = json.loads(Path(args.output).read_text(encoding="utf-8"))
    elif args.report_only:
        print(f"FAILED: --report_only needs an existing --output; {args.output} is absent.",
              file=sys.stderr)
        return 1
    try:
        merge_runs(previous, [], args)  # Fails early on a mismatched file.
        new_runs = [] if args.report_only else [
            _run_child(args, remat, batch)
            for remat in args.remat
            for batch in args.batch_sizes
        ]
        runs = merge_runs(previous, new_runs, args)
    except BenchmarkError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    report = build_report(runs, args)
    print()
    print(table(runs))
    if any(r["status"] == "ok" for r in runs):
        print()
        print(breakdown_table(runs))
    for key, fit in report["scaling"].items():
        print(f"\n{key}: {fit['per_example_bytes'] / GIB:.3f} GiB per example; "
              f"predicted peak at batch {fit['target_batch_size']}: "
              f"{_gib(fit['predicted_peak_at_target_bytes'])} GiB; largest batch within "
              f"{_gib(fit['budget_bytes'])} GiB: {fit['largest_batch_within_budget']}")
    print(f"\nVerdict: {report['verdict']}")
    path = write_json(args.output, report)
    print(f"Wrote {path}")
    failed = [r for r in new_runs if r["status"] in ("error", "failed")]
    return 1 if failed or report["verdict"] == "grows" else 0


if __name__ == "__main__":
    sys.exit(main())
