"""`keras_llm.layers.dense`: output-major projections and one initializer draw per weight."""

import doctest

import keras
import numpy as np
import pytest

from keras_llm.layers import (
    FeedForward,
    MultiHeadAttention,
    clone_initializer,
    dense,
    kernel_is_output_major,
    output_major_dense,
)
from keras_llm.models import Bert


@pytest.mark.parametrize("rank", [2, 3, 4])
def test_output_major_dense_is_x_times_kernel_transposed(rank):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(2, 3, 4, 6)[:rank - 1] + (6,)).astype("float32")
    layer = output_major_dense(5, input_rank=rank, name="output")
    outputs = layer(inputs)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    assert kernel.shape == (5, 6) and bias.shape == (5,)
    np.testing.assert_allclose(outputs, inputs @ kernel.T + bias, atol=1e-5)
    assert kernel_is_output_major(layer)
    assert not kernel_is_output_major(keras.layers.Dense(5))
    assert output_major_dense(5, 3, name="no_bias", use_bias=False).bias_axes is None
    with pytest.raises(ValueError, match="input_rank"):
        output_major_dense(5, input_rank=1, name="bad")


def test_output_projections_are_output_major_and_quantize():
    attention = MultiHeadAttention(num_heads=2)
    attention(np.ones((1, 3, 8), "float32"))
    ffn = FeedForward(intermediate_size=16)
    ffn(np.ones((1, 3, 8), "float32"))
    assert tuple(attention.output_dense.kernel.shape) == (8, 8)
    assert tuple(ffn.output_dense.kernel.shape) == (8, 16)  # [out, in]
    expected = ffn(np.ones((1, 3, 8), "float32"))
    ffn.output_dense.quantize("int8")
    assert ffn.output_dense.quantization_mode == "int8"
    np.testing.assert_allclose(ffn(np.ones((1, 3, 8), "float32")), expected, atol=0.05)


def test_every_weight_starts_from_its_own_draw():
    """One shared unseeded Keras initializer gives the same matrix for every weight of one
    shape; cloned per weight, no two of a model's kernels start equal."""
    keras.utils.set_random_seed(0)
    bert = Bert(vocab_size=32, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=8,
                max_sequence_length=32, type_vocab_size=2)
    bert({"token_ids": np.ones((1, 4), "int32")})
    by_shape: dict[tuple, list[np.ndarray]] = {}
    for weight in bert.weights:
        if weight.path.endswith(("kernel", "embeddings")):
            by_shape.setdefault(tuple(weight.shape), []).append(keras.ops.convert_to_numpy(weight))
    assert max(len(same) for same in by_shape.values()) > 2  # many [8, 8] kernels
    for same in by_shape.values():
        for i, first in enumerate(same):
            for second in same[i + 1:]:
                assert not np.allclose(first, second)
    # Still reproducible from the global seed.
    keras.utils.set_random_seed(0)
    shared = keras.initializers.TruncatedNormal(stddev=0.02)
    first = clone_initializer(shared)((3, 3))
    keras.utils.set_random_seed(0)
    shared = keras.initializers.TruncatedNormal(stddev=0.02)
    np.testing.assert_array_equal(first, clone_initializer(shared)((3, 3)))
    assert clone_initializer("zeros") == "zeros"


def test_docstring_examples():
    result = doctest.testmod(dense)
    assert result.attempted > 0 and result.failed == 0
