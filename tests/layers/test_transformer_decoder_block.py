import keras
import numpy as np
import pytest
from keras import ops

from keras_llm.layers import TransformerDecoderBlock


def to_np(x):
    return ops.convert_to_numpy(x)


@pytest.fixture
def inputs():
    return np.random.default_rng(0).normal(size=(2, 6, 16)).astype("float32")


@pytest.mark.parametrize("normalize_first", [True, False])
def test_causal(inputs, normalize_first):
    block = TransformerDecoderBlock(4, 32, normalize_first=normalize_first)
    changed = inputs.copy()
    changed[:, 4:] = 9.0
    np.testing.assert_allclose(to_np(block(inputs))[:, :4], to_np(block(changed))[:, :4],
                               atol=1e-5)


def test_cache_matches_full_pass(inputs):
    block = TransformerDecoderBlock(4, 32)
    full = to_np(block(inputs))
    cache = (np.zeros((2, 4, 6, 4), "float32"),) * 2
    out, cache = block(inputs[:, :2], cache=cache, cache_update_index=0)
    pieces = [to_np(out)]
    for i in range(2, 6):
        out, cache = block(inputs[:, i : i + 1], cache=cache, cache_update_index=i)
        pieces.append(to_np(out))
    np.testing.assert_allclose(np.concatenate(pieces, 1), full, atol=1e-5)


def test_cross_attention_uses_encoder_and_its_mask(inputs):
    block = TransformerDecoderBlock(4, 32, cross_attention=True)
    memory = np.random.default_rng(1).normal(size=(2, 3, 16)).astype("float32")
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    out = to_np(block(inputs, encoder_output=memory, encoder_padding_mask=mask))
    changed = memory.copy()
    changed[0, 2] = 50.0
    same = to_np(block(inputs, encoder_output=changed, encoder_padding_mask=mask))
    np.testing.assert_allclose(out[0], same[0], atol=1e-5)
    changed[1, 0] = 50.0
    assert not np.allclose(out[1], to_np(block(inputs, encoder_output=changed,
                                               encoder_padding_mask=mask))[1])
    with pytest.raises(ValueError, match="encoder_output"):
        block(inputs)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(inputs, policy):
    out = TransformerDecoderBlock(4, 32, dtype=policy)(inputs)
    assert keras.backend.standardize_dtype(out.dtype) == policy[6:]


def test_config_and_saving(inputs, tmp_path):
    block = TransformerDecoderBlock(4, 32, activation="relu", layer_norm_epsilon=1e-6)
    x = keras.Input((6, 16))
    model = keras.Model(x, block(x))
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(to_np(restored(inputs)), to_np(model(inputs)), atol=1e-6)
    assert TransformerDecoderBlock.from_config(block.get_config()).get_config() == \
        block.get_config()
