import numpy as np
from keras import ops

from keras_llm.layers import SinusoidalPositionEncoding


def test_matches_formula_and_offset():
    layer = SinusoidalPositionEncoding()
    out = ops.convert_to_numpy(layer(np.zeros((2, 7, 12), "float32")))
    assert out.shape == (2, 7, 12)
    pos, i = np.arange(7)[:, None], np.arange(6)[None, :]
    angle = pos / 10000 ** (2 * i / 12)
    np.testing.assert_allclose(out[0, :, 0::2], np.sin(angle), atol=1e-5)
    np.testing.assert_allclose(out[1, :, 1::2], np.cos(angle), atol=1e-5)
    shifted = ops.convert_to_numpy(layer(np.zeros((1, 3, 12), "float32"), start_index=4))
    np.testing.assert_allclose(shifted[0], out[0, 4:], atol=1e-5)


def test_config_round_trip():
    layer = SinusoidalPositionEncoding(max_wavelength=500.0)
    assert SinusoidalPositionEncoding.from_config(layer.get_config()).max_wavelength == 500.0
