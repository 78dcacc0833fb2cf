"""Greedy decoding throughput: keras-llm's GPT next to keras-hub's GPT2CausalLM (and Hugging Face).

What is measured: for each library and batch size, the wall-clock time of one `generate` call
that continues `batch` random prompts of `--prompt_length` tokens by exactly `--max_new_tokens`
tokens with greedy decoding (no stop tokens, so every row runs every step). All libraries get the
same architecture (read from a keras-llm preset), the same dtype, the same prompt tokens and the
same number of new tokens; weights are random (throughput does not depend on their values).

- keras-llm: `GptCausalLM.generate(ids, max_new_tokens, strategy="greedy")`, the whole loop
  XLA-compiled once per shape.
- keras-hub: `GPT2CausalLM(backbone, preprocessor=None)` compiled with `sampler="greedy"`,
  `generate({"token_ids", "padding_mask"}, stop_token_ids=None)` on a buffer of
  `prompt_length + max_new_tokens` positions whose mask covers the prompt. It runs XLA-compiled
  too (`--keras_hub_jit_compile=true`, the default; Keras' own "auto" disables XLA for
  TensorFlow on CPU-only machines).
- Hugging Face (optional, `--libraries=...,huggingface`): `GPT2LMHeadModel.generate(...,
  do_sample=False, min_new_tokens=max_new_tokens)` in eager PyTorch, on CUDA when available.

The first call of each (library, batch size) compiles and is timed on its own ("compile s");
then `--repeats` calls are timed, each ending with the output copied to a NumPy array so that
asynchronous backends have finished. Reported: new tokens per second (`batch * max_new_tokens /
seconds`; median, min and max over the repeats), milliseconds per decoding step (one new token
for every row), and the speed-up of the median over keras-hub's at the same batch size. Every
output is checked: shape `[batch, prompt_length + max_new_tokens]`, the prompt kept, and (for
keras-hub) every position after the prompt written by the model. A failed check exits non-zero.

Run from the repository root:

    KERAS_BACKEND=tensorflow python -m benchmarks.generate --size=gpt2_small --batch_sizes=1,16
    KERAS_BACKEND=jax python benchmarks/generate.py --size=gpt2_tiny --repeats=3
    python -m benchmarks.generate --dtype=bfloat16 --libraries=keras_llm,keras_hub,huggingface

A table is printed and every figure, the settings, library versions, backend and device are
written to `--output` (JSON).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # Run as `python benchmarks/generate.py`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# JAX must not take most of the GPU up front: PyTorch decodes in this process after it.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    comma_separated,
    comma_separated_ints,
    environment,
    format_table,
    is_installed,
    limit_tensorflow_gpu_memory,
    summarize,
    time_call,
    write_json,
)

LIBRARIES = ("keras_llm", "keras_hub", "huggingface")
DEFAULT_OUTPUT = "benchmarks/results/generate.json"


class BenchmarkError(RuntimeError):
    """A library produced a wrong output; the benchmark exits non-zero."""


@dataclass
class Shape:
    """The GPT-2 architecture every library builds."""

    vocab_size: int
    num_layers: int
    num_heads: int
    hidden_size: int
    intermediate_size: int
    max_sequence_length: int
    layer_norm_epsilon: float
    num_parameters: int = 0


@dataclass
class Runner:
    """One library's model: `generate(prompts, call_index) -> np.ndarray` and extra checks."""

    library: str
    generate: Callable[[np.ndarray, int], np.ndarray]
    # Called after every (library, batch) run with its outputs; raises BenchmarkError.
    check: Callable[[np.ndarray, list[np.ndarray]], None] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--size", default="gpt2_small",
                        help="keras-llm Gpt preset whose shape every library builds")
    parser.add_argument("--batch_sizes", type=comma_separated_ints, default="1,16")
    parser.add_argument("--prompt_length", type=int, default=32)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--dtype", default="float32",
                        help="dtype policy of every model: float32, bfloat16, float16, "
                             "mixed_bfloat16 (bfloat16 suits GPUs)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the warm-up")
    parser.add_argument("--libraries", type=comma_separated, default="keras_llm,keras_hub",
                        help=f"comma-separated subset of {','.join(LIBRARIES)}")
    parser.add_argument("--keras_hub_jit_compile", choices=("true", "false", "auto"),
                        default="true", help="`jit_compile` of keras-hub's compile()")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prompts and weights")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="JSON result file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.libraries) - set(LIBRARIES))
    if unknown or not args.libraries:
        parser.error(f"--libraries must name some of {LIBRARIES}; got {args.libraries}")
    if "huggingface" in args.libraries and not (
        is_installed("torch") and is_installed("transformers")
    ):
        parser.error("--libraries=huggingface needs torch and transformers installed")
    if args.repeats < 1 or args.prompt_length < 1 or args.max_new_tokens < 1:
        parser.error("--repeats, --prompt_length and --max_new_tokens must be positive")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        parser.error("--batch_sizes must be positive integers")
    return args


def _base_dtype(dtype: str) -> str:
    """The compute dtype of a policy name (`mixed_bfloat16` computes in bfloat16)."""
    return dtype.removeprefix("mixed_")


# keras-llm.


def keras_llm_runner(args: argparse.Namespace) -> tuple[Runner, Shape]:
    import keras

    import keras_llm

    keras.utils.set_random_seed(args.seed)
    gpt = keras_llm.models.Gpt.from_preset(args.size, dropout=0.0, dtype=args.dtype)
    lm = keras_llm.models.GptCausalLM(gpt)
    lm({"token_ids": np.zeros((1, 2), "int32")})  # Builds the weights.
    shape = Shape(
        vocab_size=gpt.vocab_size,
        num_layers=gpt.num_layers,
        num_heads=gpt.num_heads,
        hidden_size=gpt.hidden_size,
        intermediate_size=gpt.intermediate_size,
        max_sequence_length=gpt.max_sequence_length,
        layer_norm_epsilon=gpt.layer_norm_epsilon,
        num_parameters=int(lm.count_params()),
    )
    traces_before: dict[str, int] = {}

    def generate(prompts: np.ndarray, call_index: int) -> np.ndarray:
        if call_index == 0:
            traces_before["warm"] = lm.generate_trace_count
        elif call_index == 1:
            traces_before["timed"] = lm.generate_trace_count
        return lm.generate(
            prompts, max_new_tokens=args.max_new_tokens, strategy="greedy", stop_token_ids=None
        )

    def check(prompts: np.ndarray, outputs: list[np.ndarray]) -> None:
        retraced = lm.generate_trace_count - traces_before["timed"]
        if retraced:
            raise BenchmarkError(f"keras_llm retraced its decode loop {retraced} time(s) "
                                 f"during the timed calls (batch {len(prompts)}).")

    runner = Runner("keras_llm", generate, check,
                    {"jit_compile": keras.backend.backend() in ("tensorflow", "jax")})
    return runner, shape


# keras-hub.


def keras_hub_runner(args: argparse.Namespace, shape: Shape) -> Runner:
    import keras
    import keras_hub

    keras.utils.set_random_seed(args.seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=shape.vocab_size,
        num_layers=shape.num_layers,
        num_heads=shape.num_heads,
        hidden_dim=shape.hidden_size,
        intermediate_dim=shape.intermediate_size,
        max_sequence_length=shape.max_sequence_length,
        dropout=0.0,
        dtype=args.dtype,
    )
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    jit_compile = {"true": True, "false": False, "auto": "auto"}[args.keras_hub_jit_compile]
    causal_lm.compile(sampler="greedy", jit_compile=jit_compile)
    total = args.prompt_length + args.max_new_tokens
    # The warm-up call fills the positions to generate with one token, the timed calls with
    # another: a position left unwritten shows its own fill in both outputs.
    fills = (0, shape.vocab_size - 1)

    def generate(prompts: np.ndarray, call_index: int) -> np.ndarray:
        batch = prompts.shape[0]
        token_ids = np.full((batch, total), fills[min(call_index, 1)], "int32")
        token_ids[:, : args.prompt_length] = prompts
        padding_mask = np.zeros((batch, total), bool)
        padding_mask[:, : args.prompt_length] = True
        output = causal_lm.generate(
            {"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=None
        )
        if not isinstance(output, dict) or "token_ids" not in output:
            raise BenchmarkError(f"keras_hub generate returned {type(output)}, not a dict.")
        return np.asarray(keras.ops.convert_to_numpy(output["token_ids"]))

    def check(prompts: np.ndarray, outputs: list[np.ndarray]) -> None:
        warm, timed = outputs[0], outputs[1]
        new = slice(args.prompt_length, None)
        unwritten = (warm[:, new] == fills[0]) & (timed[:, new] == fills[1])
        if unwritten.any():
            rows = np.flatnonzero(unwritten.any(axis=1)).tolist()
            raise BenchmarkError(
                f"keras_hub left {int(unwritten.sum())} of {unwritten.size} positions after the "
                f"prompt ungenerated (rows {rows}); expected {args.max_new_tokens} new tokens "
                "per row."
            )

    return Runner("keras_hub", generate, check, {"jit_compile": bool(causal_lm.jit_compile)})


# Hugging Face.


def huggingface_runner(args: argparse.Namespace, shape: Shape) -> Runner:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = GPT2Config(
        vocab_size=shape.vocab_size,
        n_positions=shape.max_sequence_length,
        n_embd=shape.hidden_size,
        n_layer=shape.num_layers,
        n_head=shape.num_heads,
        n_inner=shape.intermediate_size,
        activation_function="gelu_new",
        layer_norm_epsilon=shape.layer_norm_epsilon,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch_dtype = getattr(torch, _base_dtype(args.dtype))
    model = GPT2LMHeadModel(config).to(device=device, dtype=torch_dtype).eval()

    def generate(prompts: np.ndarray, call_index: int) -> np.ndarray:
        input_ids = torch.from_numpy(prompts.astype(np.int64)).to(device)
        with torch.inference_mode():
            output = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=args.max_new_tokens,
                min_new_tokens=args.max_new_tokens,
                do_sample=False,
                pad_token_id=config.eos_token_id,
            )
        return output.cpu().numpy()  # Waits for the device.

    info = {"device": device, "torch_threads": torch.get_num_threads(), "jit_compile": False}
    return Runner("huggingface", generate, None, info)


# The benchmark.


def random_prompts(args: argparse.Namespace, vocab_size: int) -> dict[int, np.ndarray]:
    """The same random prompt tokens for every library, one array per batch size."""
    rng = np.random.default_rng(args.seed)
    largest = rng.integers(0, vocab_size, (max(args.batch_sizes), args.prompt_length))
    return {batch: largest[:batch].astype("int32") for batch in args.batch_sizes}


def check_output(library: str, prompts: np.ndarray, output: np.ndarray, expected: tuple) -> None:
    if tuple(output.shape) != expected:
        raise BenchmarkError(
            f"{library} returned shape {tuple(output.shape)} for batch {len(prompts)}; "
            f"expected {expected} (prompt_length + max_new_tokens)."
        )
    if not np.array_equal(output[:, : prompts.shape[1]], prompts):
        raise BenchmarkError(f"{library} did not keep the prompt tokens (batch {len(prompts)}).")


def benchmark(runner: Runner, prompts: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up call (compile) then `args.repeats` timed calls of one library at one batch size."""
    batch = prompts.shape[0]
    expected = (batch, args.prompt_length + args.max_new_tokens)
    compile_seconds, output = time_call(lambda: runner.generate(prompts, 0))
    check_output(runner.library, prompts, output, expected)
    outputs, seconds = [output], []
    for i in range(args.repeats):
        elapsed, output = time_call(lambda i=i: runner.generate(prompts, i + 1))
        check_output(runner.library, prompts, output, expected)
        outputs.append(output)
        seconds.append(elapsed)
    if runner.check is not None:
        runner.check(prompts, outputs)
    new_tokens = batch * args.max_new_tokens
    tokens_per_second = summarize(seconds, new_tokens)
    return {
        "library": runner.library,
        "batch_size": batch,
        "new_tokens_per_call": new_tokens,
        "output_shape": list(output.shape),
        "compile_seconds": compile_seconds,
        "seconds": seconds,
        "tokens_per_second": {k: tokens_per_second[k] for k in ("median", "min", "max")},
        "median_seconds": tokens_per_second["median_seconds"],
        "ms_per_step": 1000.0 * tokens_per_second["median_seconds"] / args.max_new_tokens,
        # Whether the two runs agree is informative only: the weights differ between libraries.
        "first_new_tokens": output[0, args.prompt_length: args.prompt_length + 8].tolist(),
        **runner.info,
    }


def add_speedups(results: list[dict[str, Any]]) -> None:
    """`speedup_vs_keras_hub`: median tokens/s over keras-hub's at the same batch size."""
    reference = {
        r["batch_size"]: r["tokens_per_second"]["median"]
        for r in results if r["library"] == "keras_hub"
    }
    for r in results:
        base = reference.get(r["batch_size"])
        r["speedup_vs_keras_hub"] = r["tokens_per_second"]["median"] / base if base else None


def table(results: list[dict[str, Any]]) -> str:
    headers = ("library", "batch", "tokens/s (median)", "min-max", "ms/token", "compile s",
               "vs keras-hub")
    rows = []
    for r in sorted(results, key=lambda r: (r["batch_size"], LIBRARIES.index(r["library"]))):
        tps = r["tokens_per_second"]
        speedup = r["speedup_vs_keras_hub"]
        rows.append((
            r["library"],
            r["batch_size"],
            f"{tps['median']:.1f}",
            f"{tps['min']:.1f}-{tps['max']:.1f}",
            f"{r['ms_per_step']:.2f}",
            f"{r['compile_seconds']:.2f}",
            f"{speedup:.2f}x" if speedup is not None else "-",
        ))
    return format_table(headers, rows)


def run(args: argparse.Namespace) -> dict[str, Any]:
    limit_tensorflow_gpu_memory()
    import keras

    backend = keras.backend.backend()
    # The keras-llm model is always built: it defines the shape the others copy.
    keras_llm_model, shape = keras_llm_runner(args)
    if args.prompt_length + args.max_new_tokens > shape.max_sequence_length:
        raise BenchmarkError(
            f"prompt_length + max_new_tokens = {args.prompt_length + args.max_new_tokens} "
            f"exceeds {args.size}'s {shape.max_sequence_length} positions."
        )
    factories: dict[str, Callable[[], Runner]] = {
        "keras_llm": lambda: keras_llm_model,
        "keras_hub": lambda: keras_hub_runner(args, shape),
        "huggingface": lambda: huggingface_runner(args, shape),
    }
    prompts = random_prompts(args, shape.vocab_size)
    env = environment(backend)
    print(f"Greedy generation, {args.size} ({shape.num_parameters / 1e6:.1f}M parameters), "
          f"dtype {args.dtype}, prompt {args.prompt_length} + {args.max_new_tokens} new tokens, "
          f"{args.repeats} timed repeats; Keras backend {backend} on {env['device']}.",
          flush=True)
    results = []
    for library in [name for name in LIBRARIES if name in args.libraries]:
        runner = factories[library]()
        for batch in args.batch_sizes:
            result = benchmark(runner, prompts[batch], args)
            print(f"  {library:<12} batch {batch:>3}: "
                  f"{result['tokens_per_second']['median']:9.1f} tokens/s "
                  f"(compile {result['compile_seconds']:.1f} s)", flush=True)
            results.append(result)
    add_speedups(results)
    return {
        "benchmark": "generate",
        "description": "greedy decoding throughput, new tokens per second, warm-up excluded",
        "settings": {
            "size": args.size,
            "batch_sizes": args.batch_sizes,
            "prompt_length": args.prompt_length,
            "max_new_tokens": args.max_new_tokens,
            "dtype": args.dtype,
            "repeats": args.repeats,
            "libraries": [name for name in LIBRARIES if name in args.libraries],
            "keras_hub_jit_compile": args.keras_hub_jit_compile,
            "seed": args.seed,
        },
        "model": vars(shape),
        "environment": env,
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
