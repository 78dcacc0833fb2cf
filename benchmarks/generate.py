"""Greedy decoding throughput: keras-llm next to keras-hub (and Hugging Face), GPT-2 or T5.

What is measured: for each library and batch size, the wall-clock time of one `generate` call
that continues `batch` random prompts of `--prompt_length` tokens by exactly `--max_new_tokens`
tokens with greedy decoding (no stop tokens, so every row runs every step). All libraries get the
same architecture (read from a keras-llm preset), the same dtype, the same prompt tokens and the
same number of new tokens; weights are random (throughput does not depend on their values).

`--model=gpt` (default): GPT-2 continues the prompts.

- keras-llm: `GptCausalLM.generate(ids, max_new_tokens, strategy="greedy")`, the whole loop
  XLA-compiled once per shape.
- keras-hub: `GPT2CausalLM(backbone, preprocessor=None)` compiled with `sampler="greedy"`,
  `generate({"token_ids", "padding_mask"}, stop_token_ids=None)` on a buffer of
  `prompt_length + max_new_tokens` positions whose mask covers the prompt. It runs XLA-compiled
  too (`--keras_hub_jit_compile=true`, the default; Keras' own "auto" disables XLA for
  TensorFlow on CPU-only machines).
- Hugging Face (optional, `--libraries=...,huggingface`): `GPT2LMHeadModel.generate(...,
  do_sample=False, min_new_tokens=max_new_tokens)` in eager PyTorch, on CUDA when available.

`--model=t5`: a T5 v1.0 encoder-decoder reads the prompts (the encoder input) and writes
`--max_new_tokens` decoder tokens after the start token 0; the encoder runs once per call.

- keras-llm: `T5Seq2SeqLM(T5.from_preset(size)).generate(ids, max_new_tokens, "greedy",
  stop_token_ids=())`: a static self-attention cache and cross-attention keys and values
  computed once, one compiled loop.
- keras-hub: `T5Seq2SeqLM(T5Backbone(...), preprocessor=None)` compiled with
  `sampler="greedy"`, `generate({"encoder_token_ids", "encoder_padding_mask",
  "decoder_token_ids", "decoder_padding_mask"}, stop_token_ids=None)` on a decoder buffer of
  `1 + max_new_tokens` positions whose mask covers the start token.
- Hugging Face: `T5ForConditionalGeneration.generate(..., do_sample=False,
  min_new_tokens=max_new_tokens)`.

The first call of each (library, batch size) compiles and is timed on its own ("compile s");
then `--repeats` calls are timed, each ending with the output copied to a NumPy array so that
asynchronous backends have finished. Reported: new tokens per second (`batch * max_new_tokens /
seconds`; median, min and max over the repeats), milliseconds per decoding step (one new token
for every row), and the speed-up of the median over keras-hub's at the same batch size. Every
output is checked: its shape (GPT: `[batch, prompt_length + max_new_tokens]` with the prompt
kept; T5: `[batch, max_new_tokens]` new tokens), and for keras-hub every position after the
prompt written by the model. A failed check exits non-zero.

Run from the repository root:

    KERAS_BACKEND=tensorflow python -m benchmarks.generate --size=gpt2_small --batch_sizes=1,16
    KERAS_BACKEND=jax python benchmarks/generate.py --size=gpt2_tiny --repeats=3
    python -m benchmarks.generate --model=t5 --size=t5_small --batch_sizes=1,16
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
from types import SimpleNamespace
from typing import Any

if __package__ in (None, ""):  # Run as `python benchmarks/generate.py`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# JAX must not take most of the GPU up front: PyTorch decodes in this process after it.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    BenchmarkError,
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
from benchmarks.peers import (  # noqa: E402
    DEFAULT_SIZES,
    FAMILIES,
    GENERATIVE_MODELS,
    huggingface_config,
    keras_hub_backbone,
    model_shape,
)

LIBRARIES = ("keras_llm", "keras_hub", "huggingface")
DEFAULT_OUTPUT = "benchmarks/results/generate.json"
DECODER_START_ID = 0  # T5's decoder start (and pad) token, in every library.


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
    parser.add_argument("--model", choices=GENERATIVE_MODELS, default="gpt",
                        help="gpt continues the prompts; t5 reads them and writes new tokens")
    parser.add_argument("--size", default=None,
                        help="keras-llm preset whose shape every library builds; unset: "
                             + ", ".join(f"{m}: {DEFAULT_SIZES[m]}" for m in GENERATIVE_MODELS))
    parser.add_argument("--batch_sizes", type=comma_separated_ints, default="1,16")
    parser.add_argument("--prompt_length", type=int, default=32,
                        help="prompt tokens (T5: encoder input tokens)")
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
    args.size = args.size or DEFAULT_SIZES[args.model]
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


def output_shape(args: argparse.Namespace, batch: int) -> tuple[int, int]:
    """GPT returns prompt and continuation; T5 only the new decoder tokens."""
    if args.model == "t5":
        return (batch, args.max_new_tokens)
    return (batch, args.prompt_length + args.max_new_tokens)


def _check_lengths(args: argparse.Namespace, shape: SimpleNamespace) -> None:
    limit = shape.max_sequence_length
    lengths = ({"prompt_length (the encoder input)": args.prompt_length,
                "1 + max_new_tokens (the decoder)": 1 + args.max_new_tokens}
               if args.model == "t5"
               else {"prompt_length + max_new_tokens": args.prompt_length + args.max_new_tokens})
    for what, length in lengths.items():
        if length > limit:
            raise BenchmarkError(f"{what} = {length} exceeds {args.size}'s {limit} positions.")


# keras-llm.


def keras_llm_runner(args: argparse.Namespace) -> tuple[Runner, SimpleNamespace]:
    """keras-llm's model, and its architecture (`model_shape`) for the other libraries."""
    import keras

    import keras_llm

    keras.utils.set_random_seed(args.seed)
    family = getattr(keras_llm.models, FAMILIES[args.model])
    backbone = family.from_preset(args.size, dropout=0.0, dtype=args.dtype)
    if args.model == "gpt":
        lm = keras_llm.models.GptCausalLM(backbone)
        lm({"token_ids": np.zeros((1, 2), "int32")})  # Builds the weights.
        stop_token_ids = None  # GptCausalLM stops on nothing unless asked.
    else:
        lm = keras_llm.models.T5Seq2SeqLM(backbone)
        lm({"encoder_token_ids": np.ones((1, 2), "int32"),
            "encoder_padding_mask": np.ones((1, 2), "int32"),
            "decoder_token_ids": np.zeros((1, 2), "int32"),
            "decoder_padding_mask": np.ones((1, 2), "int32")})
        stop_token_ids = ()  # T5Seq2SeqLM stops on </s> by default.
    shape = model_shape(backbone)
    shape.num_parameters = int(lm.count_params())
    traces_before: dict[str, int] = {}

    def generate(prompts: np.ndarray, call_index: int) -> np.ndarray:
        if call_index == 0:
            traces_before["warm"] = lm.generate_trace_count
        elif call_index == 1:
            traces_before["timed"] = lm.generate_trace_count
        return lm.generate(prompts, max_new_tokens=args.max_new_tokens, strategy="greedy",
                           stop_token_ids=stop_token_ids)

    def check(prompts: np.ndarray, outputs: list[np.ndarray]) -> None:
        retraced = lm.generate_trace_count - traces_before["timed"]
        if retraced:
            raise BenchmarkError(f"keras_llm retraced its decode loop {retraced} time(s) "
                                 f"during the timed calls (batch {len(prompts)}).")

    runner = Runner("keras_llm", generate, check,
                    {"jit_compile": keras.backend.backend() in ("tensorflow", "jax")})
    return runner, shape


# keras-hub.


def keras_hub_runner(args: argparse.Namespace, shape: SimpleNamespace) -> Runner:
    import keras
    import keras_hub

    keras.utils.set_random_seed(args.seed)
    backbone = keras_hub_backbone(args.model, shape, dropout=0.0, dtype=args.dtype)
    if args.model == "gpt":
        lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
        written = args.prompt_length  # positions of the buffer the caller fills
        key = "token_ids"
    else:
        lm = keras_hub.models.T5Seq2SeqLM(backbone=backbone, preprocessor=None)
        written = 1  # the decoder start token
        key = "decoder_token_ids"
    length = written + args.max_new_tokens
    jit_compile = {"true": True, "false": False, "auto": "auto"}[args.keras_hub_jit_compile]
    lm.compile(sampler="greedy", jit_compile=jit_compile)
    # The warm-up call fills the positions to generate with one token, the timed calls with
    # another: a position left unwritten shows its own fill in both outputs.
    fills = (0, shape.vocab_size - 1)

    def generate(prompts: np.ndarray, call_index: int) -> np.ndarray:
        batch = prompts.shape[0]
        token_ids = np.full((batch, length), fills[min(call_index, 1)], "int32")
        padding_mask = np.zeros((batch, length), bool)
        padding_mask[:, :written] = True
        if args.model == "gpt":
            token_ids[:, :written] = prompts
            inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        else:
            token_ids[:, 0] = DECODER_START_ID
            inputs = {"encoder_token_ids": prompts,
                      "encoder_padding_mask": np.ones(prompts.shape, bool),
                      "decoder_token_ids": token_ids, "decoder_padding_mask": padding_mask}
        output = lm.generate(inputs, stop_token_ids=None)
        if not isinstance(output, dict) or key not in output:
            raise BenchmarkError(f"keras_hub generate returned {type(output)}, not a dict "
                                 f"with {key!r}.")
        output = np.asarray(keras.ops.convert_to_numpy(output[key]))
        return output if args.model == "gpt" else output[:, 1:]

    def check(prompts: np.ndarray, outputs: list[np.ndarray]) -> None:
        warm, timed = outputs[0], outputs[1]
        new = slice(args.prompt_length if args.model == "gpt" else 0, None)
        unwritten = (warm[:, new] == fills[0]) & (timed[:, new] == fills[1])
        if unwritten.any():
            rows = np.flatnonzero(unwritten.any(axis=1)).tolist()
            raise BenchmarkError(
                f"keras_hub left {int(unwritten.sum())} of {unwritten.size} positions after the "
                f"prompt ungenerated (rows {rows}); expected {args.max_new_tokens} new tokens "
                "per row."
            )

    return Runner("keras_hub", generate, check, {"jit_compile": bool(lm.jit_compile)})


# Hugging Face.


def huggingface_runner(args: argparse.Namespace, shape: SimpleNamespace) -> Runner:
    import torch
    import transformers

    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = huggingface_config(args.model, shape, dropout=0.0)
    model_class = (transformers.GPT2LMHeadModel if args.model == "gpt"
                   else transformers.T5ForConditionalGeneration)
    torch_dtype = getattr(torch, _base_dtype(args.dtype))
    model = model_class(config).to(device=device, dtype=torch_dtype).eval()

    def generate(prompts: np.ndarray, call_index: int) -> np.ndarray:
        input_ids = torch.from_numpy(prompts.astype(np.int64)).to(device)
        with torch.inference_mode():
            output = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=args.max_new_tokens,
                min_new_tokens=args.max_new_tokens,
                do_sample=False,
                # GPT-2 has no pad token; its end token stands in, as usual.
                pad_token_id=config.pad_token_id if args.model == "t5" else config.eos_token_id,
            )
        output = output.cpu().numpy()  # Waits for the device.
        return output if args.model == "gpt" else output[:, 1:]  # T5: after the start token

    info = {"device": device, "torch_threads": torch.get_num_threads(), "jit_compile": False,
            "attn_implementation": model.config._attn_implementation}
    return Runner("huggingface", generate, None, info)


# The benchmark.


def random_prompts(args: argparse.Namespace, vocab_size: int) -> dict[int, np.ndarray]:
    """The same random prompt tokens for every library, one array per batch size."""
    rng = np.random.default_rng(args.seed)
    largest = rng.integers(0, vocab_size, (max(args.batch_sizes), args.prompt_length))
    return {batch: largest[:batch].astype("int32") for batch in args.batch_sizes}


def check_output(library: str, prompts: np.ndarray, output: np.ndarray, expected: tuple,
                 keeps_prompt: bool = True) -> None:
    """The shape `expected`, and (where the output holds it) the prompt unchanged."""
    if tuple(output.shape) != expected:
        what = "prompt_length + max_new_tokens" if keeps_prompt else "max_new_tokens"
        raise BenchmarkError(
            f"{library} returned shape {tuple(output.shape)} for batch {len(prompts)}; "
            f"expected {expected} ({what})."
        )
    if keeps_prompt and not np.array_equal(output[:, : prompts.shape[1]], prompts):
        raise BenchmarkError(f"{library} did not keep the prompt tokens (batch {len(prompts)}).")


def benchmark(runner: Runner, prompts: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up call (compile) then `args.repeats` timed calls of one library at one batch size."""
    batch = prompts.shape[0]
    expected = output_shape(args, batch)
    keeps_prompt = args.model == "gpt"
    compile_seconds, output = time_call(lambda: runner.generate(prompts, 0))
    check_output(runner.library, prompts, output, expected, keeps_prompt)
    outputs, seconds = [output], []
    for i in range(args.repeats):
        elapsed, output = time_call(lambda i=i: runner.generate(prompts, i + 1))
        check_output(runner.library, prompts, output, expected, keeps_prompt)
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
        "first_new_tokens": output[0, expected[1] - args.max_new_tokens:][:8].tolist(),
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
    _check_lengths(args, shape)
    factories: dict[str, Callable[[], Runner]] = {
        "keras_llm": lambda: keras_llm_model,
        "keras_hub": lambda: keras_hub_runner(args, shape),
        "huggingface": lambda: huggingface_runner(args, shape),
    }
    prompts = random_prompts(args, shape.vocab_size)
    env = environment(backend)
    print(f"Greedy generation, {args.model} {args.size} "
          f"({shape.num_parameters / 1e6:.1f}M parameters), "
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
            "model": args.model,
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
