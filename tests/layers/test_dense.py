"""`keras_llm.layers.dense`: output-major projections and one initializer draw per weight."""

import doctest
import re

import keras
import numpy as np
import pytest

from keras_llm.layers import (
    FeedForward,
    MultiHeadAttention,
    OutputMajorDense,
    clone_initializer,
    dense,
    kernel_is_output_major,
)
from keras_llm.models import Bert


@pytest.mark.parametrize("rank", [2, 3, 4])
def test_output_major_dense_is_x_times_kernel_transposed(rank):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(2, 3, 4, 6)[:rank - 1] + (6,)).astype("float32")
    layer = OutputMajorDense(5, name="output")
    outputs = layer(inputs)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    assert kernel.shape == (5, 6) and bias.shape == (5,)
    assert tuple(outputs.shape) == inputs.shape[:-1] + (5,)
    np.testing.assert_allclose(outputs, inputs @ kernel.T + bias, atol=1e-5)
    assert kernel_is_output_major(layer)
    assert not kernel_is_output_major(keras.layers.Dense(5))


def test_output_major_dense_config_symbolic_shapes_and_errors():
    layer = OutputMajorDense(5, use_bias=False, activation="relu", name="no_bias")
    config = layer.get_config()
    assert config["units"] == 5 and config["use_bias"] is False and "equation" not in config
    clone = OutputMajorDense.from_config(config)
    assert clone.get_config() == config and clone.bias_axes is None
    symbolic = keras.Input((None, 6))  # Unknown batch and length.
    assert tuple(clone(symbolic).shape) == (None, None, 5)
    with pytest.raises(ValueError, match="rank 2 or more"):
        OutputMajorDense(5)(np.ones((6,), "float32"))
    with pytest.raises(ValueError, match="incompatible"):
        clone(np.ones((2, 7), "float32"))  # Built for 6 features.


def _optimized_gradient_hlo(layer, inputs) -> tuple[np.ndarray, str]:
    """The kernel gradient of `sum(layer(x) ** 2)` and the XLA-optimized HLO computing it."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def kernel_gradient(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(layer(x) ** 2)
            return tape.gradient(loss, layer.kernel)

        hlo = kernel_gradient.experimental_get_compiler_ir(inputs)(stage="optimized_hlo")
        return keras.ops.convert_to_numpy(kernel_gradient(inputs)), hlo
    import jax

    def loss(trainable, x):
        outputs, _ = layer.stateless_call(trainable, [], x)
        return (outputs**2).sum()

    kernel_gradient = jax.jit(lambda trainable, x: jax.grad(loss)(trainable, x)[0])
    trainable = [v.value for v in layer.trainable_variables]
    hlo = kernel_gradient.lower(trainable, inputs).compile().as_text()
    return np.asarray(kernel_gradient(trainable, inputs)), hlo


def test_kernel_gradient_is_one_matmul():
    """Over `[batch, seq, in]` TensorFlow's einsum gradient is a batched matmul writing one
    kernel-sized gradient per batch row; the layer flattens the rows, so every dot is 2-D."""
    layer = OutputMajorDense(16)
    inputs = np.random.default_rng(0).normal(size=(4, 3, 8)).astype("float32")
    layer(inputs)
    gradient, hlo = _optimized_gradient_hlo(layer, keras.ops.convert_to_tensor(inputs))
    dots = re.findall(r"= f32\[([0-9,]*)\][^ ]* dot\(", hlo)
    assert dots and all(shape.count(",") == 1 for shape in dots), dots
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    outputs = inputs.reshape(-1, 8) @ kernel.T + bias
    np.testing.assert_allclose(gradient, 2 * outputs.T @ inputs.reshape(-1, 8), rtol=1e-4)


def _optimized_loop_hlo(layer, inputs) -> str:
    """The XLA-optimized HLO of 4 applications of `layer` in a loop, as a decode loop runs."""
    def step(i, rows):
        return keras.ops.tanh(layer(rows))

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        loop = tf.function(lambda x: tf.while_loop(
            lambda i, h: i < 4, lambda i, h: (i + 1, step(i, h)), (0, x))[1], jit_compile=True)
        return loop.experimental_get_compiler_ir(inputs)(stage="optimized_hlo")
    import jax

    def loop(trainable, x):
        def body(i, h):
            return keras.ops.tanh(layer.stateless_call(trainable, [], h)[0])
        return jax.lax.fori_loop(0, 4, body, x)

    trainable = [v.value for v in layer.trainable_variables]
    return jax.jit(loop).lower(trainable, inputs).compile().as_text()


def test_a_loop_reads_the_kernel_as_it_lies():
    """At batch 1 in a decode loop, no step copies or transposes the kernel (TensorFlow's
    transpose op for `x @ kernel.T` made XLA's CPU compiler copy it at every step)."""
    layer = OutputMajorDense(64)
    inputs = keras.ops.ones((1, 1, 64))
    layer(inputs)
    hlo = _optimized_loop_hlo(layer, inputs)
    kernel_sized = [line.strip()[:120] for line in hlo.splitlines()
                    if re.search(r"= f32\[64,64\]\S* (copy|transpose)\(", line)]
    assert not kernel_sized, kernel_sized


def test_every_block_projection_is_output_major_and_quantizes():
    attention = MultiHeadAttention(num_heads=2)
    attention(np.ones((1, 3, 8), "float32"))
    cross = MultiHeadAttention(num_heads=2, cross_attention=True)
    cross(np.ones((1, 3, 8), "float32"), np.ones((1, 5, 8), "float32"))
    ffn = FeedForward(intermediate_size=16, gated=True)
    ffn(np.ones((1, 3, 8), "float32"))
    shapes = {  # [out, in]
        attention.qkv_dense: (24, 8), attention.output_dense: (8, 8),
        cross.query_dense: (8, 8), cross.key_value_dense: (16, 8),
        ffn.intermediate_dense: (16, 8), ffn.gate_dense: (16, 8), ffn.output_dense: (8, 16),
    }
    for layer, shape in shapes.items():
        assert kernel_is_output_major(layer) and tuple(layer.kernel.shape) == shape, layer.name
    expected = ffn(np.ones((1, 3, 8), "float32"))
    for layer in (ffn.intermediate_dense, ffn.gate_dense, ffn.output_dense):
        layer.quantize("int8")
        assert layer.quantization_mode == "int8"
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
