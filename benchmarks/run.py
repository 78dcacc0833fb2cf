"""The benchmark suite in one command: training, generation and serving, one table, JSON and PNG.

Runs the suites of `benchmarks/` with settings chosen for the device and size, then prints one
combined table (each figure next to keras-hub's), and writes everything (settings, library
versions, device, every suite's full report) to `<output_dir>/suite_<cpu|gpu>.json` and a bar
chart of the speed-ups over keras-hub to `suite_<cpu|gpu>.png` (`_smoke` is added with
`--smoke`).

- `train` (`benchmarks/train.py`): training-step samples/s and TFLOP/s for BERT sequence
  classification, GPT-2 causal LM and T5 seq2seq; keras-llm, keras-hub and (when PyTorch is
  installed) Hugging Face, each library in its own process.
- `generate` (`benchmarks/generate.py`): greedy decoding, new tokens/s at batch 1 and 16, for
  GPT-2 and T5.
- `serve` (`benchmarks/serving.py`): requests of raw strings to an exported SavedModel,
  examples/s at the median latency. It needs TensorFlow; under another backend it is listed as
  skipped.

Sizes (`--size`; `auto`: `small` on a CPU, `base` on a GPU):

| suite | small (CPU) | base (GPU) |
|---|---|---|
| train bert | bert_small, 32 x 128 | bert_base, 32 x 128 |
| train gpt | gpt2_mini, 4 x 256 | gpt2_small, 8 x 1024 |
| train t5 | t5_tiny, 16 x 128 -> 32 | t5_small, 32 x 512 -> 128 |
| generate gpt | gpt2_tiny, prompt 32 + 128 new, batch 1 and 16 | gpt2_small, the same |
| generate t5 | t5_tiny, input 128 -> 32 new, batch 1 and 16 | t5_small, 512 -> 128, the same |
| serve | bert_small, 128 tokens, batch 1, 8 and 32 | bert_base, the same |

`--dtype=auto` is float32 on a CPU and bfloat16 (mixed for training) on a GPU, where the
Hugging Face model is also `torch.compile`d. `--smoke` shrinks everything to tiny shapes and a
step or two (keras-llm and keras-hub only, in one process) so that CI can run it in about a
minute.

Run from the repository root:

    python -m benchmarks.run --suite=all --backend=tensorflow --device=cpu
    python benchmarks/run.py --suite=train --backend=jax --device=gpu --size=base
    python -m benchmarks.run --suite=all --smoke --output_dir=/tmp/suite

`--backend` sets `KERAS_BACKEND` before Keras is imported (if Keras is already imported with
another backend, the suite re-runs itself in a fresh process); `--device=cpu` hides the GPUs
from every library. The exit status is non-zero when any suite failed (e.g. a NaN loss); the
other suites still run and the files are still written.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # Run as `python benchmarks/run.py`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    comma_separated,
    format_table,
    is_installed,
    write_json,
)
from benchmarks.peers import GENERATIVE_MODELS, MODELS  # noqa: E402

SUITES = ("train", "generate", "serve")
BACKENDS = ("tensorflow", "jax")
ROOT = Path(__file__).resolve().parents[1]

# Per size: the flags of each suite's script (before the dtype and library flags).
TRAIN_CASES = {
    "small": {
        "bert": ["--size=bert_small", "--batch_size=32", "--sequence_length=128"],
        "gpt": ["--size=gpt2_mini", "--batch_size=4", "--sequence_length=256"],
        "t5": ["--size=t5_tiny", "--batch_size=16", "--sequence_length=128",
               "--decoder_length=32"],
    },
    "base": {
        "bert": ["--size=bert_base", "--batch_size=32", "--sequence_length=128"],
        "gpt": ["--size=gpt2_small", "--batch_size=8", "--sequence_length=1024"],
        "t5": ["--size=t5_small", "--batch_size=32", "--sequence_length=512",
               "--decoder_length=128"],
    },
    "smoke": {
        "bert": ["--size=bert_tiny", "--batch_size=4", "--sequence_length=16"],
        "gpt": ["--size=gpt2_tiny", "--batch_size=2", "--sequence_length=16"],
        "t5": ["--size=t5_tiny", "--batch_size=2", "--sequence_length=16",
               "--decoder_length=8"],
    },
}
TRAIN_BUDGET = {
    "small": ["--steps=3", "--warmup=1", "--repeats=3"],
    # A GPU's load does not vary: one library after the other, each with all the memory.
    "base": ["--steps=20", "--warmup=5", "--repeats=5", "--schedule=sequential"],
    "smoke": ["--steps=2", "--warmup=0", "--repeats=2", "--in_process"],
}
GENERATE_CASES = {
    "small": {
        "gpt": ["--size=gpt2_tiny", "--batch_sizes=1,16", "--prompt_length=32",
                "--max_new_tokens=128", "--repeats=3"],
        "t5": ["--size=t5_tiny", "--batch_sizes=1,16", "--prompt_length=128",
               "--max_new_tokens=32", "--repeats=3"],
    },
    "base": {
        "gpt": ["--size=gpt2_small", "--batch_sizes=1,16", "--prompt_length=32",
                "--max_new_tokens=128", "--repeats=5"],
        "t5": ["--size=t5_small", "--batch_sizes=1,16", "--prompt_length=512",
               "--max_new_tokens=128", "--repeats=5"],
    },
    "smoke": {
        "gpt": ["--size=gpt2_tiny", "--batch_sizes=1", "--prompt_length=4",
                "--max_new_tokens=4", "--repeats=2"],
        "t5": ["--size=t5_tiny", "--batch_sizes=1", "--prompt_length=4",
               "--max_new_tokens=4", "--repeats=2"],
    },
}
SERVE_CASES = {
    "small": ["--preset=bert_small", "--batch_sizes=1,8,32", "--sequence_length=128"],
    "base": ["--preset=bert_base", "--batch_sizes=1,8,32", "--sequence_length=128"],
    "smoke": ["--preset=bert_tiny", "--batch_sizes=1", "--sequence_length=16", "--warmup=1",
              "--repeats=3"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--suite", choices=(*SUITES, "all"), default="all")
    parser.add_argument("--backend", choices=BACKENDS,
                        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
                        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default="auto",
                        help="cpu hides the GPUs; gpu fails without one; auto takes what "
                             "the backend sees")
    parser.add_argument("--size", choices=("small", "base", "auto"), default="auto",
                        help="shapes of every suite (auto: small on a CPU, base on a GPU)")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="auto: float32 on a CPU, bfloat16 on a GPU (training: "
                             "mixed_bfloat16)")
    parser.add_argument("--train_models", type=comma_separated, default="bert,gpt,t5",
                        help=f"models of the train suite, some of {','.join(MODELS)}")
    parser.add_argument("--generate_models", type=comma_separated, default="gpt,t5",
                        help="models of the generate suite, some of "
                             f"{','.join(GENERATIVE_MODELS)}")
    parser.add_argument("--output_dir", default="benchmarks/results")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny shapes and a step or two: checks that everything runs")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.train_models) - set(MODELS))
    if unknown or not args.train_models:
        parser.error(f"--train_models must name some of {', '.join(MODELS)}; got "
                     f"{','.join(args.train_models) or 'nothing'}")
    unknown = sorted(set(args.generate_models) - set(GENERATIVE_MODELS))
    if unknown or not args.generate_models:
        parser.error(f"--generate_models must name some of {', '.join(GENERATIVE_MODELS)}; got "
                     f"{','.join(args.generate_models) or 'nothing'}")
    args.suites = list(SUITES) if args.suite == "all" else [args.suite]
    return args


# Backend and device: set before Keras is imported, or re-run in a fresh process.


def environment_changes(args: argparse.Namespace) -> dict[str, str]:
    """The environment variables the backend and device choice need."""
    # JAX must not take most of the GPU up front: PyTorch runs beside or after it.
    changes = {"KERAS_BACKEND": args.backend, "TF_CPP_MIN_LOG_LEVEL": "2",
               "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if args.device == "cpu":
        changes.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    return changes


def needs_fresh_process(changes: dict[str, str]) -> bool:
    """Whether a framework this process already imported was set up differently."""
    imported = [m for m in ("keras", "jax", "tensorflow", "torch") if m in sys.modules]
    if not imported:
        return False
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != changes["KERAS_BACKEND"]:
            return True
    # Log level and preallocation: harmless to miss, not worth a second process.
    no_rerun = ("TF_CPP_MIN_LOG_LEVEL", "XLA_PYTHON_CLIENT_PREALLOCATE")
    return any(os.environ.get(k) != v for k, v in changes.items() if k not in no_rerun)


def rerun(argv: list[str], changes: dict[str, str]) -> int:
    """Runs this suite again in a fresh Python process with `changes` in its environment."""
    env = {**os.environ, **changes}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "benchmarks.run", *argv], env=env,
                          cwd=ROOT).returncode


# The suites.


def _dtype(args: argparse.Namespace, device_type: str, training: bool) -> str:
    dtype = args.dtype if args.dtype != "auto" else (
        "bfloat16" if device_type == "gpu" else "float32")
    return f"mixed_{dtype}" if training and dtype == "bfloat16" else dtype


def _huggingface(args: argparse.Namespace) -> list[str]:
    return ["huggingface"] if not args.smoke and is_installed("torch") and is_installed(
        "transformers") else []


def run_train(args, model: str, size: str, device_type: str) -> dict[str, Any]:
    from benchmarks import train

    libraries = ",".join(["keras_llm", "keras_hub", *_huggingface(args)])
    argv = [f"--model={model}", *TRAIN_CASES[size][model], *TRAIN_BUDGET[size],
            f"--dtype={_dtype(args, device_type, training=True)}",
            f"--libraries={libraries}",
            # XLA on a GPU; the smoke run saves XLA's compile time on the CPU.
            f"--jit_compile={'false' if args.smoke and device_type == 'cpu' else 'true'}"]
    if device_type == "gpu" and "huggingface" in libraries:
        argv.append("--torch_compile")
    print(f"\n== train {model}: {' '.join(argv)}", flush=True)
    report = train.run(train.parse_args(argv))
    print(train.table(report["results"]), flush=True)
    return report


def run_generate(args, model: str, size: str, device_type: str) -> dict[str, Any]:
    from benchmarks import generate

    libraries = ",".join(["keras_llm", "keras_hub", *_huggingface(args)])
    argv = [f"--model={model}", *GENERATE_CASES[size][model],
            f"--dtype={_dtype(args, device_type, training=False)}",
            f"--libraries={libraries}"]
    print(f"\n== generate {model}: {' '.join(argv)}", flush=True)
    report = generate.run(generate.parse_args(argv))
    print(generate.table(report["results"]), flush=True)
    return report


def run_serve(args, size: str) -> dict[str, Any]:
    from benchmarks import serving

    argv = list(SERVE_CASES[size])
    print(f"\n== serve: {' '.join(argv)}", flush=True)
    report = serving.run(serving.parse_args(argv))
    report["benchmark"] = "serve"
    add_serving_speedups(report["results"])
    return report


def add_serving_speedups(results: list[dict[str, Any]]) -> None:
    reference = {r["batch_size"]: r["examples_per_second"]
                 for r in results if r["library"] == "keras_hub"}
    for r in results:
        base = reference.get(r["batch_size"])
        r["speedup_vs_keras_hub"] = r["examples_per_second"] / base if base else None


# One table.


def rows_of(suite: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The combined table's rows (suite, case, library, metric, value, speed-up) of a report."""
    rows = []
    if suite == "train":
        s = report["settings"]
        shape = f"{s['batch_size']}x{s['sequence_length']}"
        if s["model"] == "t5":
            shape += f"->{s['decoder_length']}"
        case = f"{s['model']} {s['size']} {shape} {s['dtype']}"
        for r in report["results"]:
            rows.append({"suite": suite, "case": case, "library": r["library"],
                         "metric": "samples/s", "value": r["samples_per_second"]["median"],
                         "speedup_vs_keras_hub": r["speedup_vs_keras_hub"],
                         "note": f"{r['tflops']:.3f} TFLOP/s"})
    elif suite == "generate":
        s = report["settings"]
        # GPT continues a prompt; T5 writes new tokens after reading its input.
        model = s.get("model", "gpt")
        joint = "->" if model == "t5" else "+"
        for r in report["results"]:
            case = (f"{model} {s['size']} b{r['batch_size']} {s['prompt_length']}{joint}"
                    f"{s['max_new_tokens']} {s['dtype']}")
            rows.append({"suite": suite, "case": case, "library": r["library"],
                         "metric": "new tokens/s", "value": r["tokens_per_second"]["median"],
                         "speedup_vs_keras_hub": r["speedup_vs_keras_hub"],
                         "note": f"{r['ms_per_step']:.2f} ms/token"})
    else:
        s = report["settings"]
        for r in report["results"]:
            case = f"{s['preset']} b{r['batch_size']} seq {s['sequence_length']}"
            rows.append({"suite": suite, "case": case, "library": r["library"],
                         "metric": "examples/s", "value": r["examples_per_second"],
                         "speedup_vs_keras_hub": r["speedup_vs_keras_hub"],
                         "note": f"p50 {r['p50_ms']:.1f} ms"})
    return rows


def combined_table(rows: list[dict[str, Any]]) -> str:
    headers = ("suite", "case", "library", "metric", "median", "vs keras-hub", "note")
    cells = []
    for r in rows:
        value = r.get("value")
        speedup = r.get("speedup_vs_keras_hub")
        cells.append((r["suite"], r["case"], r["library"], r["metric"],
                      "-" if value is None else f"{value:.2f}",
                      "-" if speedup is None else f"{speedup:.2f}x", r.get("note", "")))
    return format_table(headers, cells)


def write_chart(path: Path, rows: list[dict[str, Any]], title: str) -> Path:
    """A horizontal bar per (case, library) of the speed-up over keras-hub; 1.0 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [r for r in rows if r.get("speedup_vs_keras_hub") is not None
            and r["library"] != "keras_hub"]
    colors = {"keras_llm": "#d62728", "huggingface": "#ff7f0e"}
    figure, axes = plt.subplots(figsize=(9, 1.2 + 0.35 * max(len(bars), 1)))
    if bars:
        labels = [f"{r['suite']}: {r['case']} [{r['library']}]" for r in bars]
        values = [r["speedup_vs_keras_hub"] for r in bars]
        positions = range(len(bars))
        axes.barh(positions, values, color=[colors.get(r["library"], "#1f77b4") for r in bars])
        axes.set_yticks(list(positions), labels, fontsize=7)
        axes.invert_yaxis()
        axes.axvline(1.0, color="black", linewidth=1, linestyle="--")
        axes.set_xlim(0, 1.15 * max(*values, 1.0))  # Room for the labels.
        for position, value in zip(positions, values, strict=True):
            axes.text(value, position, f" {value:.2f}x", va="center", fontsize=7)
        axes.set_xlabel("speed-up over keras-hub (median; > 1 is faster)")
    else:
        axes.text(0.5, 0.5, "no speed-ups measured", ha="center", va="center")
        axes.set_axis_off()
    axes.set_title(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def run(args: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """Runs the suites in this process (backend and device already set); `(report, status)`."""
    import keras

    from benchmarks.common import environment

    backend = keras.backend.backend()
    env = environment(backend)
    device_type = env["device_type"]
    if args.device == "gpu" and device_type != "gpu":
        raise SystemExit(f"--device=gpu, but the {backend} backend sees no GPU. Use "
                         "--device=cpu or auto, or install the backend's CUDA build.")
    size = "smoke" if args.smoke else (
        args.size if args.size != "auto" else ("base" if device_type == "gpu" else "small"))
    print(f"Benchmark suite: {', '.join(args.suites)}; size {size}; Keras backend {backend} "
          f"on {env['device']}.", flush=True)

    reports: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for suite in args.suites:
        if suite == "serve" and backend != "tensorflow":
            reason = f"skipped: needs TensorFlow (Keras backend is {backend})"
            reports[suite] = {"skipped": reason}
            rows.append({"suite": suite, "case": "-", "library": "-", "metric": "-",
                         "value": None, "speedup_vs_keras_hub": None, "note": reason})
            continue
        # One case per model of the train and generate suites, so that a failed one loses
        # nothing but itself.
        models = {"train": args.train_models, "generate": args.generate_models}.get(suite, [None])
        per_model = suite != "serve"
        if per_model:
            reports[suite] = []
        for model in models:
            try:
                if suite == "serve":
                    report = run_serve(args, size)
                else:
                    run_case = run_train if suite == "train" else run_generate
                    report = run_case(args, model, size, device_type)
            except (Exception, SystemExit) as error:  # A failure must not hide the rest.
                message = f"{type(error).__name__}: {error}"
                where = suite if model is None else f"{suite} {model}"
                print(f"FAILED: {where}: {message}", file=sys.stderr, flush=True)
                traceback.print_exc()
                failures.append({"suite": suite, "model": model, "error": message})
                report = {"model": model, "failed": message}
                rows.append({"suite": suite, "case": model or "-", "library": "-",
                             "metric": "-", "value": None, "speedup_vs_keras_hub": None,
                             "note": f"FAILED: {message[:120]}"})
            else:
                rows += rows_of(suite, report)
            if per_model:
                reports[suite].append(report)
            else:
                reports[suite] = report
    report = {
        "benchmark": "suite",
        "settings": {"suites": args.suites, "backend": backend, "device": args.device,
                     "size": size, "dtype": args.dtype, "smoke": args.smoke,
                     "train_models": args.train_models,
                     "generate_models": args.generate_models},
        "environment": env,
        "rows": rows,
        "failures": failures,
        "reports": reports,
    }
    return report, 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    changes = environment_changes(args)
    if needs_fresh_process(changes):
        return rerun(argv, changes)
    os.environ.update(changes)
    report, status = run(args)
    device_type = report["environment"]["device_type"]
    stem = f"suite_{device_type}" + ("_smoke" if args.smoke else "")
    output_dir = Path(args.output_dir)
    json_path = write_json(output_dir / f"{stem}.json", report)
    title = (f"keras-llm benchmark suite, {report['settings']['size']}, Keras "
             f"{report['settings']['backend']} on {report['environment']['device']}")
    chart_path = write_chart(output_dir / f"{stem}.png", report["rows"], title)
    print()
    print(combined_table(report["rows"]))
    print(f"\nWrote {json_path} and {chart_path}")
    if status:
        print(f"FAILED suites: {', '.join(f['suite'] for f in report['failures'])}",
              file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
