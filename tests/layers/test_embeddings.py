import numpy as np
import pytest
from keras import ops

from keras_llm.layers import Embeddings


def test_sum_of_three_embeddings_then_norm():
    layer = Embeddings(50, 8, 10, type_vocab_size=2, normalize=False)
    ids, segments = np.array([[3, 4, 5]]), np.array([[0, 1, 1]])
    out = ops.convert_to_numpy(layer(ids, segment_ids=segments))
    token = ops.convert_to_numpy(layer.token_embedding.embeddings)
    position = ops.convert_to_numpy(layer.position_embedding.embeddings)
    segment = ops.convert_to_numpy(layer.segment_embedding.embeddings)
    expected = token[ids[0]] + position[:3] + segment[segments[0]]
    np.testing.assert_allclose(out[0], expected, atol=1e-6)
    # start_index shifts the positions (decoding with a cache).
    out = ops.convert_to_numpy(layer(ids[:, :1], segment_ids=segments[:, :1], start_index=4))
    np.testing.assert_allclose(out[0, 0], token[3] + position[4] + segment[0], atol=1e-6)


def test_layer_norm_applied():
    out = ops.convert_to_numpy(Embeddings(50, 16, 10)(np.array([[1, 2]])))
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-5)


def test_errors_name_the_problem():
    layer = Embeddings(50, 8, 4)
    with pytest.raises(ValueError, match="only 4 positions"):
        layer(np.zeros((1, 5), "int32"))
    with pytest.raises(ValueError, match="id 50, outside the vocabulary"):
        layer(np.array([[1, 50]]))
    with pytest.raises(ValueError, match="id -1"):
        layer(np.array([[1, -1]]))
    with pytest.raises(ValueError, match="segment_ids"):
        layer(np.array([[1, 2]]), segment_ids=np.array([[0, 2]]))


def test_config_round_trip():
    layer = Embeddings(50, 8, 4, type_vocab_size=0, normalize=False, dropout=0.1)
    assert Embeddings.from_config(layer.get_config()).get_config() == layer.get_config()
