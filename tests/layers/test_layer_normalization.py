"""`LayerNormalization`: Keras' layer with a call that XLA fuses into one GPU kernel."""

import keras
import numpy as np
import pytest

from keras_llm.layers import LayerNormalization


def keras_twin(ours: LayerNormalization, inputs: np.ndarray) -> keras.layers.LayerNormalization:
    theirs = keras.layers.LayerNormalization.from_config(ours.get_config())
    theirs.build(inputs.shape)
    theirs.set_weights(ours.get_weights())
    return theirs


@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_matches_keras(offset):
    """Same output as Keras' call, also for inputs far from zero mean (the variance is taken
    around the mean, never as E[x^2] - E[x]^2)."""
    rng = np.random.default_rng(0)
    inputs = (rng.normal(size=(2, 5, 16)) * 3 + offset).astype("float32")
    norm = LayerNormalization(epsilon=1e-5)
    norm.build(inputs.shape)
    norm.set_weights([rng.normal(size=16).astype("float32"), rng.normal(size=16).astype("float32")])
    expected = keras_twin(norm, inputs)(inputs)
    np.testing.assert_allclose(norm(inputs), expected, atol=1e-5, rtol=1e-5)


def test_same_weights_config_and_dtype_as_keras():
    norm = LayerNormalization(epsilon=1e-6, dtype="mixed_bfloat16", name="norm")
    outputs = norm(np.ones((2, 3, 8), "float32"))
    assert [w.path for w in norm.weights] == ["norm/gamma", "norm/beta"]
    assert [w.dtype for w in norm.weights] == ["float32", "float32"]
    assert keras.backend.standardize_dtype(outputs.dtype) == "bfloat16"
    config = norm.get_config()
    restored = LayerNormalization.from_config(config)
    assert restored.get_config() == config
    assert isinstance(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(
        norm)), LayerNormalization)


@pytest.mark.parametrize("options", [dict(axis=1), dict(center=False), dict(scale=False)])
def test_other_settings_match_keras(options):
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(2, 4, 6)).astype("float32")
    norm = LayerNormalization(**options)
    norm.build(inputs.shape)
    norm.set_weights([rng.normal(size=w.shape).astype("float32") for w in norm.weights])
    np.testing.assert_allclose(norm(inputs), keras_twin(norm, inputs)(inputs), atol=1e-5)


def test_docstring_example():
    import doctest

    from keras_llm.layers import layer_normalization

    result = doctest.testmod(layer_normalization)
    assert result.attempted > 0 and result.failed == 0
