#!/usr/bin/env bash
# Issue #7's GPU measurements in one call of about nine minutes, for a lent H100/H200 machine
# (Python 3.12 with JAX, PyTorch and transformers, no TensorFlow, no network).
#
# Here, once, fetch the wheels that machine lacks into the ignored folder .whl:
#
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#         --platform manylinux_2_17_x86_64 -d .whl keras==3.15.1 keras-hub==0.32.0 namex optree
#
# then run it there with the device tool: command `bash benchmarks/device_check.sh`, carry
# `.whl`, timeout_s 600. Every step writes its JSON to $OUT as soon as it ends, so a step cut
# off by its time limit loses only itself. In order of what issue #7 asks first:
#
#   1. train_bert.json: BERT-base classification step, 32 x 128, mixed_bfloat16, XLA, AdamW,
#      dropout 0.1: keras-llm, keras-hub, Hugging Face (SDPA, torch.compile).
#   2. generate.json: GPT-2 124M greedy decoding, prompt 32 + 128 new tokens, batch 1 and 16,
#      bfloat16: keras-llm, keras-hub, Hugging Face.
#   3. decode_hlo.json: from XLA's optimized HLO of step 2's decode loops, the kernels each
#      generated token launches, the bytes it copies and whether the loop's trip count is
#      known, per library and batch size (benchmarks/hlo_census.py): batch 1 is launch-bound,
#      so this says where the time goes.
#      decode_hlo_text.tar.gz holds those modules' HLO text.
#   4. train_bert_attention_dropout0.json: step 1 with attention-probability dropout 0 in both
#      Keras libraries, so training reaches cuDNN's fused attention (benchmarks/NOTES.md).
#
# DEVICE_CHECK_WHEELS names another wheel folder (default .whl; none there: nothing installed).
# DEVICE_CHECK_SMOKE=1 runs the same steps on the CPU with tiny shapes (how this script is
# tested without a GPU, in a Python without TensorFlow).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
exec > >(tee "$OUT/device_check.log") 2>&1

WHEELS=${DEVICE_CHECK_WHEELS:-.whl}
if [ -d "$WHEELS" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2

if [ "${DEVICE_CHECK_SMOKE:-0}" = 1 ]; then
    export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""
    bert=(--size=bert_tiny --batch_size=4 --sequence_length=16 --dtype=float32)
    train_budget=(--steps=2 --warmup=1 --repeats=2)
    gpt=(--size=gpt2_tiny --dtype=float32 --prompt_length=4 --max_new_tokens=4 --repeats=2)
    torch_compile=()
    limits=(300 300 60 300)
else
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    bert=(--size=bert_base --batch_size=32 --sequence_length=128 --dtype=mixed_bfloat16)
    torch_compile=(--torch_compile)
    train_budget=(--steps=20 --warmup=5 --repeats=3)
    gpt=(--size=gpt2_small --dtype=bfloat16 --prompt_length=32 --max_new_tokens=128 --repeats=3)
    limits=(230 170 20 110)
fi
python3 - <<'PY' || exit 1
import jax, keras, keras_hub, torch, transformers
print("jax", jax.__version__, jax.devices(), "| keras", keras.__version__, keras.backend.backend(),
      "| keras-hub", keras_hub.__version__, "| torch", torch.__version__,
      "cuda" if torch.cuda.is_available() else "cpu", "| transformers", transformers.__version__)
try:  # Would Keras pick cuDNN's fused attention for BERT-base's shapes? (A private helper.)
    import jax.numpy as jnp
    from keras.src.backend.jax.nn import _can_use_flash_attention
    heads = jnp.zeros((32, 128, 12, 64), jnp.bfloat16)
    mask_bias = jnp.zeros((32, 1, 128, 128), jnp.bfloat16)
    print("cuDNN flash attention, bf16 32x128x12x64: no mask",
          _can_use_flash_attention(heads, heads, heads, None), "| mask as bias",
          _can_use_flash_attention(heads, heads, heads, mask_bias))
except Exception as error:
    print("cuDNN flash attention check failed:", type(error).__name__, error)
PY

status=0
step() {  # step NAME LIMIT_S COMMAND...: one measurement under a time limit.
    local name=$1 limit=$2
    shift 2
    echo; echo "=== $name (at most ${limit} s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" || { echo "=== $name FAILED (status $?)"; status=1; }
    echo "=== $name took $((SECONDS - start)) s"
}
step train_bert "${limits[0]}" python3 -m benchmarks.train --model=bert "${bert[@]}" \
    "${train_budget[@]}" --schedule=sequential --jit_compile=true "${torch_compile[@]}" \
    --libraries=keras_llm,keras_hub,huggingface --output="$OUT/train_bert.json"
hlo_dump=$(mktemp -d /tmp/device_check_hlo.XXXXXX)  # one per run: runs may overlap
step generate "${limits[1]}" \
    env XLA_FLAGS="${XLA_FLAGS:-} --xla_dump_to=$hlo_dump --xla_dump_hlo_as_text" \
    python3 -m benchmarks.generate "${gpt[@]}" --batch_sizes=1,16 \
    --libraries=keras_llm,keras_hub,huggingface --output="$OUT/generate.json"
# The census, and the decode modules' HLO itself (a few hundred kB gzipped) to read again later.
step decode_hlo "${limits[2]}" bash -c 'python3 -m benchmarks.hlo_census "$1" \
    --output="$2/decode_hlo.json" && cd "$1" && tar czf "$2/decode_hlo_text.tar.gz" \
    $(ls | grep -E "(stateless|generate).*after_optimizations.txt$")' _ "$hlo_dump" "$OUT"
rm -rf "$hlo_dump"
step train_bert_attention_dropout0 "${limits[3]}" python3 -m benchmarks.train --model=bert \
    "${bert[@]}" "${train_budget[@]}" --schedule=sequential --jit_compile=true \
    --attention_dropout=0 --libraries=keras_llm,keras_hub \
    --output="$OUT/train_bert_attention_dropout0.json"
echo; echo "device_check: $SECONDS s in all, status $status; results in $OUT"
exit $status
