"""RMS normalization and T5's relative position buckets against their definitions."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_llm.layers import RelativePositionBias, RMSNormalization, relative_position_buckets


def test_rms_normalization():
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32")
    layer = RMSNormalization(epsilon=1e-6)
    out = ops.convert_to_numpy(layer(x))
    expected = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    bf16 = RMSNormalization(dtype="mixed_bfloat16")(x)
    assert keras.backend.standardize_dtype(bf16.dtype) == "bfloat16"
    assert RMSNormalization.from_config(layer.get_config()).epsilon == 1e-6


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets, max_distance", [(32, 128), (8, 16)])
def test_buckets_equal_transformers(bidirectional, num_buckets, max_distance):
    torch = pytest.importorskip("torch")
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    relative = np.arange(-300, 301)[None, :] - np.arange(0, 40)[:, None]
    expected = t5.T5Attention._relative_position_bucket(
        torch.tensor(relative), bidirectional=bidirectional, num_buckets=num_buckets,
        max_distance=max_distance,
    ).numpy()
    ours = ops.convert_to_numpy(
        relative_position_buckets(relative, bidirectional, num_buckets, max_distance))
    np.testing.assert_array_equal(ours, expected)


def test_bias_with_offset_is_a_slice_of_the_full_bias():
    layer = RelativePositionBias(num_heads=2, num_buckets=8, max_distance=16, bidirectional=False)
    layer.build()
    layer.embeddings.assign(np.random.default_rng(0).normal(size=(8, 2)).astype("float32"))
    full = ops.convert_to_numpy(layer(query_length=6, key_length=6))
    row = ops.convert_to_numpy(layer(query_length=1, key_length=6, query_offset=4))
    assert full.shape == (1, 2, 6, 6)
    np.testing.assert_allclose(row[:, :, 0], full[:, :, 4], atol=1e-6)
    assert RelativePositionBias.from_config(layer.get_config()).num_buckets == 8
