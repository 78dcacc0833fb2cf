"""Every layer runs under the mixed policies, keeping float32 weights and float32 statistics."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_llm.layers import (
    Embeddings,
    FeedForward,
    MaskedLMHead,
    SinusoidalPositionEncoding,
)

POLICIES = ["mixed_bfloat16", "mixed_float16"]


def make_head(policy):
    embedding = keras.layers.Embedding(30, 8, dtype=policy)
    embedding.build((None,))
    return MaskedLMHead(embedding, dtype=policy)


CASES = {
    "feed_forward": (lambda p: FeedForward(16, dtype=p), lambda: np.ones((2, 3, 8), "float32")),
    "embeddings": (lambda p: Embeddings(30, 8, 10, dtype=p), lambda: np.array([[1, 2, 3]])),
    "sinusoidal": (lambda p: SinusoidalPositionEncoding(dtype=p),
                   lambda: np.zeros((1, 3, 8), "float32")),
    "masked_lm_head": (make_head, lambda: np.ones((2, 3, 8), "float32")),
}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_under_mixed_policy(case, policy):
    make, inputs = CASES[case]
    layer = make(policy)
    output = layer(inputs())
    assert keras.backend.standardize_dtype(output.dtype) == policy.split("_")[1]
    assert np.isfinite(ops.convert_to_numpy(ops.cast(output, "float32"))).all()
    assert all(w.dtype == "float32" for w in layer.weights)
