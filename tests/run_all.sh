#!/usr/bin/env bash
# The whole test suite: everything on the TensorFlow backend, then the backend-agnostic
# layers, models, generation, metrics and checkpoint converters (and their docstring
# examples) again on JAX.
# Tests run in TEST_WORKERS processes (pytest-xdist; default 2): much of a test is
# single-threaded (Python, tracing, XLA compiling, a subprocess importing TensorFlow),
# so two workers finish the suite about a third sooner on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
workers=(-n "${TEST_WORKERS:-2}")
KERAS_BACKEND=tensorflow python -m pytest -q "${workers[@]}" "$@"
KERAS_BACKEND=jax python -m pytest -q "${workers[@]}" tests/layers tests/models tests/generation tests/metrics tests/convert \
    tests/test_docstrings.py "$@"
