#!/usr/bin/env bash
# The whole test suite: everything on the TensorFlow backend, then the backend-agnostic
# layers, models, generation, metrics and checkpoint converters again on JAX.
set -euo pipefail
cd "$(dirname "$0")/.."
KERAS_BACKEND=tensorflow python -m pytest -q "$@"
KERAS_BACKEND=jax python -m pytest -q tests/layers tests/models tests/generation tests/metrics tests/convert "$@"
