import numpy as np
import pytest
from keras import ops
from scipy.special import erf

from keras_llm.layers import FeedForward


def reference(layer, x, activation):
    h = x @ ops.convert_to_numpy(layer.intermediate_dense.kernel).T + ops.convert_to_numpy(
        layer.intermediate_dense.bias
    )
    h = activation(h)
    return h @ ops.convert_to_numpy(layer.output_dense.kernel).T + ops.convert_to_numpy(
        layer.output_dense.bias
    )


ACTIVATIONS = {
    "gelu": lambda h: 0.5 * h * (1 + erf(h / np.sqrt(2))),
    "gelu_approximate": lambda h: 0.5 * h * (
        1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3))
    ),
    "relu": lambda h: np.maximum(h, 0),
}


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_matches_definition(activation):
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype("float32") * 3
    layer = FeedForward(16, activation=activation)
    out = layer(x)
    expected = reference(layer, x, ACTIVATIONS[activation])
    np.testing.assert_allclose(ops.convert_to_numpy(out), expected, atol=1e-5)


def test_hf_activation_names_and_errors():
    assert FeedForward(4, activation="gelu_new")(np.ones((1, 2, 4), "float32")).shape == (1, 2, 4)
    with pytest.raises(ValueError, match="Unknown activation"):
        FeedForward(4, activation="gelu_fancy")


def test_config_round_trip():
    layer = FeedForward(32, activation="gelu_approximate", use_bias=False, dropout=0.2)
    assert FeedForward.from_config(layer.get_config()).get_config() == layer.get_config()
