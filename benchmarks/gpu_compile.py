"""XLA's GPU compile of each library's decode loop, on a machine without a GPU.

JAX can compile for a GPU it does not have: the CUDA plugin (`pip install
"jax[cuda12-local]"`, no CUDA libraries needed to compile) builds a compile-only device from a
description of the card (`TARGETS`), and `jax.jit(...).lower(...).compile()` for that device runs
XLA's whole GPU pipeline (fusion, Triton and cuBLAS choices, scheduling) as it would on the card.
This script builds each library's model as `benchmarks/generate.py` does (same architecture,
dtype, prompt and number of new tokens), starts one `generate` call, and compiles the decode
function that call would run for the target instead of running it; `benchmarks/hlo_census.py`
then counts what one step of the loop launches, copies and writes on that GPU.

What it shows without a GPU: the kernels per generated token (at batch 1 on an H100 a GPT-2 step
is short enough for launches, not weight reads, to set its speed), the copies and other large
writes per step, and whether the compiled loop kept a known trip count. What it cannot show:
times, and anything decided when the program runs (autotuning picks among kernels by timing them
on the card; without one XLA takes its default choices, so a real run may split or pick gemms
differently, and command buffers are formed from the compiled thunks, after this HLO).

Run from the repository root (it sets `KERAS_BACKEND=jax` and, unless set, `JAX_PLATFORMS=cpu`):

    python -m benchmarks.gpu_compile --size=gpt2_small --batch_sizes=1,16 --dtype=bfloat16 \\
        --output=benchmarks/results/decode_hlo_h100.json --hlo_dir=/tmp/h100_hlo

A table is printed; the census of each (library, batch size), the settings and versions go to
`--output` (JSON), and each optimized module to `--hlo_dir` when given.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # Run as `python benchmarks/gpu_compile.py`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ["KERAS_BACKEND"] = "jax"
# The models are built on the CPU; listing only the CPU also skips the plugin's check for a
# CUDA driver, which a machine without a GPU does not have.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

from benchmarks import generate, hlo_census  # noqa: E402
from benchmarks.common import BenchmarkError, environment, write_json  # noqa: E402

# The card as XLA's GPU compiler sees it (a `stream_executor.GpuTargetConfigProto` in text
# form), written from NVIDIA's public figures for the H100 SXM5 80 GB: compute capability 9.0,
# 132 SMs at up to 1.98 GHz, 3.35 TB/s of HBM3, 50 MB of L2, 228 KB of shared memory per SM;
# cuDNN 9.8 (which cuDNN fusions XLA may form).
TARGETS = {
    "h100": """
gpu_device_info {
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_block_optin: 232448
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: 84942979072
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
  cuda_compute_capability { major: 9 minor: 0 }
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 8 patch: 0 }
device_description_str: "NVIDIA H100 80GB HBM3"
""",
}


def compile_only_device(target: str):
    """A JAX device of the `target` card that can compile programs but not run them."""
    import jax
    from jax.experimental import topologies

    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}; expected one of {sorted(TARGETS)}.")
    try:
        topology = topologies.get_topology_desc(
            platform="cuda", target_config=TARGETS[target], topology="1x1x1"
        )
    except (NotImplementedError, RuntimeError) as error:
        raise BenchmarkError(
            f"JAX cannot compile for a CUDA GPU here ({error}). Install the CUDA plugin that "
            f'matches JAX {jax.__version__}: pip install "jax[cuda12-local]=={jax.__version__}" '
            "(it needs no CUDA libraries to compile)."
        ) from error
    return topology.devices[0]


class _Compiled(Exception):
    """Stops the call whose decode function was compiled: there is no device to run it on."""


# (device, XLA options, list of optimized modules) of the innermost
# `compile_instead_of_running` block.
_ACTIVE: list[tuple[Any, dict[str, Any], list[str]]] = []
# Without the card XLA cannot time candidate kernels, and its default Triton tiling of some
# matmul shapes fails to compile; cuBLAS, the other candidate a real run's autotuner weighs,
# compiles them.
CUBLAS_GEMMS = {"xla_gpu_enable_triton_gemm": False}


@contextlib.contextmanager
def compile_instead_of_running(
    device, modules: list[str], options: dict[str, Any] | None = None
) -> Iterator[None]:
    """Within the block, calling a function wrapped by `jax.jit` compiles it for `device` (with
    XLA's debug `options`), appends the optimized HLO text to `modules` and raises `_Compiled`.

    Both libraries wrap their decode loop in `jax.jit` when `generate` is called (keras-llm in
    `compile_stateful`, keras-hub in `make_generate_function`), with the weights as arguments, so
    each array argument is replaced by its shape and dtype placed on `device`. They keep the
    wrapped function for later calls: outside a block it runs as `jax.jit` would.
    """
    import jax

    real_jit = jax.jit

    def compile_jit(fun: Callable | None = None, **options):
        if fun is None:  # Used as `@partial(jax.jit, static_argnames=...)`.
            return lambda f: compile_jit(f, **options)
        jitted = real_jit(fun, **options)
        static_positions = options.get("static_argnums", ()) or ()
        static_names = options.get("static_argnames", ()) or ()
        static_positions = {static_positions} if isinstance(static_positions, int) else set(
            static_positions)
        static_names = {static_names} if isinstance(static_names, str) else set(static_names)

        def call(*args, **kwargs):
            if not _ACTIVE:
                return jitted(*args, **kwargs)
            target, compiler_options, sink = _ACTIVE[-1]

            def on_target(value):
                if isinstance(value, (jax.Array, np.ndarray)):
                    sharding = jax.sharding.SingleDeviceSharding(target)
                    return jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding)
                return value

            args = [arg if i in static_positions else jax.tree_util.tree_map(on_target, arg)
                    for i, arg in enumerate(args)]
            kwargs = {name: value if name in static_names
                      else jax.tree_util.tree_map(on_target, value)
                      for name, value in kwargs.items()}
            lowered = jitted.lower(*args, **kwargs)
            sink.append(lowered.compile(compiler_options=compiler_options or None).as_text())
            raise _Compiled

        return call

    jax.jit = compile_jit
    _ACTIVE.append((device, options or {}, modules))
    try:
        yield
    finally:
        _ACTIVE.pop()
        jax.jit = real_jit


def decode_module(runner: generate.Runner, prompts: np.ndarray, device,
                  options: dict[str, Any] | None = None) -> str:
    """The optimized HLO of the decode loop that `runner.generate(prompts)` would run."""
    modules: list[str] = []
    with compile_instead_of_running(device, modules, options):
        try:
            runner.generate(prompts, 0)
        except _Compiled:
            pass
    if not modules:
        raise BenchmarkError(f"{runner.library}'s generate compiled no function with jax.jit.")
    return modules[-1]


def is_tiling_failure(error: Exception) -> bool:
    return "Couldn't find output tile sizes" in str(error)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=sorted(TARGETS), default="h100")
    parser.add_argument("--model", choices=generate.GENERATIVE_MODELS, default="gpt")
    parser.add_argument("--size", default=None, help="keras-llm preset (generate.py's default)")
    parser.add_argument("--batch_sizes", default="1,16")
    parser.add_argument("--prompt_length", type=int, default=32)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--libraries", default="keras_llm,keras_hub",
                        help="keras_llm and/or keras_hub")
    parser.add_argument("--output", help="JSON file for the census (default: print only)")
    parser.add_argument("--hlo_dir", help="folder for each optimized module's text")
    args = parser.parse_args(argv)
    forwarded = ["--model", args.model, "--batch_sizes", args.batch_sizes,
                 "--prompt_length", str(args.prompt_length),
                 "--max_new_tokens", str(args.max_new_tokens), "--dtype", args.dtype,
                 "--libraries", args.libraries, "--repeats", "1"]
    if args.size:
        forwarded += ["--size", args.size]
    args.generate = generate.parse_args(forwarded)
    if "huggingface" in args.generate.libraries:
        parser.error("--libraries: only keras_llm and keras_hub compile with XLA")
    return args


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One census row per (batch size, library)."""
    device = compile_only_device(args.target)
    settings = args.generate
    runner, shape = generate.keras_llm_runner(settings)
    runners = [runner] if "keras_llm" in settings.libraries else []
    if "keras_hub" in settings.libraries:
        runners.append(generate.keras_hub_runner(settings, shape))
    rows = []
    for batch in settings.batch_sizes:
        prompts = np.random.default_rng(settings.seed).integers(
            0, shape.vocab_size, (batch, settings.prompt_length)).astype("int32")
        for runner in runners:
            options: dict[str, Any] = {}
            try:
                text = decode_module(runner, prompts, device)
            except Exception as error:  # XLA's compiler errors have no narrower public type.
                if not is_tiling_failure(error):
                    raise
                options = CUBLAS_GEMMS
                text = decode_module(runner, prompts, device, options)
            census = hlo_census.loop_census(text)
            if census is None:
                raise BenchmarkError(f"{runner.library}'s decode module holds no loop.")
            name = f"{runner.library}_{settings.model}_{settings.size}_b{batch}"
            if args.hlo_dir:
                Path(args.hlo_dir).mkdir(parents=True, exist_ok=True)
                (Path(args.hlo_dir) / f"{name}.{args.target}.txt").write_text(text)
            rows.append({"module": name, "library": runner.library, "batch": batch,
                         "compiler_options": options, **census})
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rows = run(args)
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"XLA's {args.target} compile, one step of the decode loop "
          f"({args.generate.model} {args.generate.size}, {args.generate.dtype}, prompt "
          f"{args.generate.prompt_length} + {args.generate.max_new_tokens} new tokens):")
    print(hlo_census.table(rows))
    for row in rows:
        if row["compiler_options"]:
            print(f"{row['module']}: compiled with {row['compiler_options']} (cuBLAS matmuls: "
                  "XLA's untimed default Triton tiling failed on one of its shapes)")
    if args.output:
        settings = {key: value for key, value in vars(args).items() if key != "generate"}
        report = {"settings": {**settings, "size": args.generate.size},
                  "environment": environment("jax"), "loops": rows}
        print(f"\nWrote {write_json(args.output, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
