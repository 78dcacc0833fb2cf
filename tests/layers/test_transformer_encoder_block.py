import keras
import numpy as np
import pytest
from keras import ops

from keras_llm.layers import TransformerEncoderBlock


@pytest.fixture
def inputs():
    return np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")


@pytest.mark.parametrize("normalize_first", [False, True])
def test_padding_does_not_leak(inputs, normalize_first):
    block = TransformerEncoderBlock(4, 32, normalize_first=normalize_first)
    padding = np.array([[1, 1, 1, 0, 0]] * 2)
    changed = inputs.copy()
    changed[:, 3:] = 50.0
    a = ops.convert_to_numpy(block(inputs, padding_mask=padding))
    b = ops.convert_to_numpy(block(changed, padding_mask=padding))
    np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-5)


def test_post_norm_output_is_normalized(inputs):
    out = ops.convert_to_numpy(TransformerEncoderBlock(4, 32)(inputs))
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-4)
    out = ops.convert_to_numpy(TransformerEncoderBlock(4, 32, normalize_first=True)(inputs))
    assert np.abs(out.mean(-1)).max() > 1e-3


def test_attention_scores_on_request(inputs):
    block = TransformerEncoderBlock(4, 32)
    out, scores = block(inputs, return_attention_scores=True)
    assert scores.shape == (2, 4, 5, 5)
    np.testing.assert_allclose(ops.convert_to_numpy(scores).sum(-1), 1, atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(out), ops.convert_to_numpy(block(inputs)),
                               atol=1e-5)


def test_bad_mask_rank(inputs):
    with pytest.raises(ValueError, match="padding_mask"):
        TransformerEncoderBlock(4, 32)(inputs, padding_mask=np.ones((2,)))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(inputs, policy):
    block = TransformerEncoderBlock(4, 32, dtype=policy)
    out = block(inputs, padding_mask=np.array([[1, 1, 1, 0, 0]] * 2))
    assert keras.backend.standardize_dtype(out.dtype) == policy.split("_")[1]
    assert np.isfinite(ops.convert_to_numpy(ops.cast(out, "float32"))).all()
    assert all(w.dtype == "float32" for w in block.weights)


def test_config_and_saving_round_trip(inputs, tmp_path):
    block = TransformerEncoderBlock(4, 32, activation="relu", dropout=0.1, normalize_first=True)
    x = keras.Input((5, 16))
    model = keras.Model(x, block(x))
    path = str(tmp_path / "block.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(inputs)), ops.convert_to_numpy(model(inputs)), atol=1e-6
    )
    assert restored.layers[-1].get_config() == block.get_config()
