"""`benchmarks/gpu_compile.py`: both libraries' GPT-2 decode loops compiled for an H100 by
XLA's GPU compiler, on this machine without a GPU, and counted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_gpu_compile(*args: str) -> subprocess.CompletedProcess:
    # The script sets KERAS_BACKEND=jax itself (its own process: this one may run TensorFlow).
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_compile", *args],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )


@pytest.mark.slow
def test_compiles_both_decode_loops_for_an_h100(tmp_path):
    output, hlo_dir = tmp_path / "h100.json", tmp_path / "hlo"
    result = run_gpu_compile(
        "--size=gpt2_tiny", "--batch_sizes=1,2", "--prompt_length=8", "--max_new_tokens=8",
        f"--output={output}", f"--hlo_dir={hlo_dir}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["settings"]["target"] == "h100" and report["settings"]["size"] == "gpt2_tiny"
    loops = {(loop["library"], loop["batch"]): loop for loop in report["loops"]}
    assert set(loops) == {("keras_llm", 1), ("keras_llm", 2), ("keras_hub", 1), ("keras_hub", 2)}

    for (_, batch), loop in loops.items():
        text = (hlo_dir / f"{loop['module']}.h100.txt").read_text()
        # GPU-only annotations: every launched instruction has a stream (operation queue).
        assert '"operation_queue_id"' in text
        assert loop["launches"] > 0 and loop["written_bytes"] > 0
        assert loop["compiler_options"] == {}  # XLA's defaults compiled these shapes
        cache_batch = int(loop["cache_buffer"].split("[")[1].split(",")[0])
        assert cache_batch == batch
    for batch in (1, 2):
        ours, theirs = loops[("keras_llm", batch)], loops[("keras_hub", batch)]
        # With no stop token, the GPU compiler keeps the trip count of keras-llm's counted loop
        # (all 8 new tokens between two checks); keras-hub's loop has none.
        assert ours["known_trip_count"] == 8
        assert theirs["known_trip_count"] is None
        # The heads-first (keys, values) cache is written in place: no copy of it.
        assert ours["copy_bytes"] < 1000
        assert ours["launches"] < theirs["launches"]
    assert "keras_llm_gpt_gpt2_tiny_b1" in result.stdout


def test_an_unknown_target_or_library_is_refused():
    result = run_gpu_compile("--target=a100")
    assert result.returncode == 2 and "--target" in result.stderr
    result = run_gpu_compile("--libraries=huggingface")
    assert result.returncode == 2 and "only keras_llm and keras_hub" in result.stderr


LAYER_NORM_KERNELS = """
import json, jax, keras
from benchmarks import gpu_compile, hlo_census
from keras_llm.layers import LayerNormalization
device = gpu_compile.compile_only_device("h100")
sharding = jax.sharding.SingleDeviceSharding(device)
kernels = {}
for name, layer in [("keras_llm", LayerNormalization(dtype="bfloat16")),
                    ("keras", keras.layers.LayerNormalization(dtype="bfloat16"))]:
    layer.build((ROWS, 768))
    def norm(x, gamma, beta, layer=layer):
        with keras.StatelessScope(state_mapping=[(layer.gamma, gamma), (layer.beta, beta)]):
            return layer(x)
    shapes = [((ROWS, 768), "bfloat16"), ((768,), "float32"), ((768,), "float32")]
    args = [jax.ShapeDtypeStruct(shape, dtype, sharding=sharding) for shape, dtype in shapes]
    kernels[name] = hlo_census.entry_launches(jax.jit(norm).lower(*args).compile().as_text())
print(json.dumps(kernels))
"""


@pytest.mark.parametrize("rows", [16, 512])
def test_layer_normalization_is_one_h100_kernel(rows):
    """keras-llm's layer norm (one centring) is one kernel on an H100, Keras' own three."""
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", LAYER_NORM_KERNELS.replace("ROWS", str(rows))],
        capture_output=True, text=True, env=env, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    kernels = json.loads(result.stdout.strip().splitlines()[-1])
    assert kernels == {"keras_llm": 1, "keras": 3}
