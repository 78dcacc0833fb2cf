import keras
import numpy as np
import pytest
from keras import ops

from keras_llm.layers import MultiHeadAttention, merge_attention_masks


def to_np(x):
    return ops.convert_to_numpy(x)


def reference_attention(layer, query, key_value, mask=None, bias=None):
    """Plain numpy softmax(QK^T / sqrt(d) + bias) V through the layer's own weights."""
    heads, size = layer.num_heads, layer.head_size
    if layer.cross_attention:
        q = query @ to_np(layer.query_dense.kernel).T + to_np(layer.query_dense.bias)
        kv = key_value @ to_np(layer.key_value_dense.kernel).T + to_np(layer.key_value_dense.bias)
        k, v = np.split(kv, 2, axis=-1)
    else:
        qkv = query @ to_np(layer.qkv_dense.kernel).T + to_np(layer.qkv_dense.bias)
        q, k, v = np.split(qkv, 3, axis=-1)

    def split(x):
        return x.reshape(x.shape[0], x.shape[1], heads, size).transpose(0, 2, 1, 3)

    q, k, v = split(q), split(k), split(v)
    logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size)
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = np.where(mask[:, None], logits, -1e9)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = (probs @ v).transpose(0, 2, 1, 3).reshape(query.shape[0], query.shape[1], -1)
    return out @ to_np(layer.output_dense.kernel).T + to_np(layer.output_dense.bias), probs


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    return rng.normal(size=(2, 6, 16)).astype("float32")


def test_matches_numpy_reference_with_padding_mask(inputs):
    layer = MultiHeadAttention(num_heads=4)
    padding = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    output, scores = layer(inputs, padding_mask=padding, return_attention_scores=True)
    expected, expected_probs = reference_attention(
        layer, inputs, inputs, mask=np.broadcast_to(padding[:, None, :] > 0, (2, 6, 6))
    )
    np.testing.assert_allclose(to_np(output), expected, atol=1e-5)
    np.testing.assert_allclose(to_np(scores), expected_probs, atol=1e-6)
    # The fused path (no scores asked for) gives the same output.
    np.testing.assert_allclose(to_np(layer(inputs, padding_mask=padding)), expected, atol=1e-5)


def test_padded_keys_do_not_change_real_outputs(inputs):
    layer = MultiHeadAttention(num_heads=2)
    padding = np.array([[1, 1, 1, 0, 0, 0]] * 2)
    changed = inputs.copy()
    changed[:, 3:] = 100.0
    a = to_np(layer(inputs, padding_mask=padding))
    b = to_np(layer(changed, padding_mask=padding))
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-5)


def test_causal_mask_hides_the_future(inputs):
    layer = MultiHeadAttention(num_heads=2)
    changed = inputs.copy()
    changed[:, 4:] = -7.0
    a = to_np(layer(inputs, use_causal_mask=True))
    b = to_np(layer(changed, use_causal_mask=True))
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-5)
    assert not np.allclose(a[:, 4:], b[:, 4:])
    _, scores = layer(inputs, use_causal_mask=True, return_attention_scores=True)
    assert np.all(np.triu(to_np(scores)[0, 0], k=1) < 1e-7)


@pytest.mark.parametrize("padding", [None, [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]])
def test_fused_kernel_gets_causality_as_a_flag(inputs, padding, attention_kernel_calls):
    calls = attention_kernel_calls
    layer = MultiHeadAttention(num_heads=2)
    layer.build(inputs.shape)
    padding = None if padding is None else np.array(padding)
    output = layer(inputs, padding_mask=padding, use_causal_mask=True)
    causal = np.tril(np.ones((6, 6), bool))[None]
    mask = causal if padding is None else causal & (padding[:, None, :] > 0)
    expected, _ = reference_attention(layer, inputs, inputs, mask=np.broadcast_to(mask, (2, 6, 6)))
    # Left padding leaves the first rows with no key at all; only real rows are compared.
    real = np.ones((2, 6), bool) if padding is None else padding > 0
    np.testing.assert_allclose(to_np(output)[real], expected[real], atol=1e-5)
    assert calls[-1]["is_causal"] is True
    if padding is None:
        assert calls[-1]["mask"] is None
    # Against a cache, a prompt goes to the kernel with the explicit offset mask; a
    # one-token step reads the heads-first cache in its own two matmuls instead.
    cache = (np.zeros((2, 2, 6, 8), "float32"),) * 2
    count = len(calls)
    _, cache = layer(inputs[:, :3], cache=cache, cache_update_index=0, use_causal_mask=True)
    assert len(calls) == count + 1 and calls[-1]["is_causal"] is False
    layer(inputs[:, 3:4], cache=cache, cache_update_index=3, use_causal_mask=True)
    assert len(calls) == count + 1


def test_attention_bias_is_added_to_the_logits(inputs):
    layer = MultiHeadAttention(num_heads=2)
    bias = np.random.default_rng(1).normal(size=(1, 2, 6, 6)).astype("float32")
    output = layer(inputs, attention_bias=bias)
    expected, _ = reference_attention(layer, inputs, inputs, bias=bias)
    np.testing.assert_allclose(to_np(output), expected, atol=1e-5)


def test_cross_attention(inputs):
    layer = MultiHeadAttention(num_heads=4, cross_attention=True)
    memory = np.random.default_rng(2).normal(size=(2, 9, 16)).astype("float32")
    padding = np.ones((2, 9), "int32")
    padding[0, 5:] = 0
    output = layer(inputs, key_value=memory, padding_mask=padding)
    mask = np.broadcast_to(padding[:, None, :] > 0, (2, 6, 9))
    expected, _ = reference_attention(layer, inputs, memory, mask=mask)
    np.testing.assert_allclose(to_np(output), expected, atol=1e-5)
    with pytest.raises(ValueError, match="key_value"):
        layer(inputs)


@pytest.mark.parametrize("return_scores", [False, True])
def test_key_value_cache_matches_full_causal_pass(inputs, return_scores):
    # With scores asked for, the prompt too is computed explicitly on the heads-first cache.
    layer = MultiHeadAttention(num_heads=4)
    full = to_np(layer(inputs, use_causal_mask=True))
    cache = (np.zeros((2, 4, 6, 4), "float32"),) * 2
    # Prefill three tokens, then decode one token at a time.
    steps = []
    for start, end in [(0, 3), (3, 4), (4, 5), (5, 6)]:
        out, cache, *_ = layer(
            inputs[:, start:end], cache=cache, cache_update_index=start, use_causal_mask=True,
            return_attention_scores=return_scores,
        )
        steps.append(to_np(out))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    assert [tuple(buffer.shape) for buffer in cache] == [(2, 4, 6, 4)] * 2


def test_bad_cache_raises(inputs):
    layer = MultiHeadAttention(num_heads=4)
    with pytest.raises(ValueError, match=r"\(keys, values\) pair"):
        layer(inputs[:, :1], cache=np.zeros((2, 2, 6, 4, 4), "float32"), cache_update_index=0)
    with pytest.raises(ValueError, match="4 heads"):
        layer(inputs[:, :1], cache=(np.zeros((2, 6, 4, 4), "float32"),) * 2,
              cache_update_index=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"padding_mask": np.ones((2, 6, 6))}, "padding_mask"),
        ({"padding_mask": np.ones((2, 5))}, "key length"),
        ({"attention_mask": np.ones((2, 6))}, "attention_mask"),
        ({"attention_mask": np.ones((2, 6, 4))}, "key length"),
    ],
)
def test_bad_mask_shapes_raise(inputs, kwargs, match):
    layer = MultiHeadAttention(num_heads=2)
    with pytest.raises(ValueError, match=match):
        layer(inputs, **kwargs)


def test_merge_masks_combines_all_three():
    mask = merge_attention_masks(
        1, 3, 3,
        padding_mask=np.array([[1, 1, 0]]),
        attention_mask=np.array([[[1, 1, 1], [0, 1, 1], [1, 1, 1]]]),
        use_causal_mask=True,
    )
    expected = [[[True, False, False], [False, True, False], [True, True, False]]]
    np.testing.assert_array_equal(to_np(mask), expected)


def test_config_round_trip(inputs):
    layer = MultiHeadAttention(num_heads=4, head_size=8, use_bias=False, scale=1.0, dropout=0.1)
    layer(inputs)
    clone = MultiHeadAttention.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(inputs)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(to_np(clone(inputs)), to_np(layer(inputs)), atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(inputs, policy):
    layer = MultiHeadAttention(num_heads=2, dtype=policy)
    output, scores = layer(inputs, return_attention_scores=True)
    assert keras.backend.standardize_dtype(output.dtype) == policy.split("_")[1]
    # The softmax runs in float32.
    assert keras.backend.standardize_dtype(scores.dtype) == "float32"
    reference = MultiHeadAttention(num_heads=2)
    reference(inputs)
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        to_np(ops.cast(output, "float32")), to_np(reference(inputs)), atol=5e-2
    )


def test_dropout_only_in_training(inputs):
    layer = MultiHeadAttention(num_heads=2, dropout=0.5)
    np.testing.assert_allclose(to_np(layer(inputs)), to_np(layer(inputs)))
    assert not np.allclose(to_np(layer(inputs, training=True)), to_np(layer(inputs)))
