import keras
import numpy as np
from keras import ops

from keras_llm.layers import MaskedLMHead


def test_output_projection_is_the_embedding_matrix():
    embedding = keras.layers.Embedding(30, 8)
    embedding.build((None,))
    head = MaskedLMHead(embedding, activation="relu")
    sequence = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    positions = np.array([[1, 3], [0, 4]])
    logits = ops.convert_to_numpy(head(sequence, mask_positions=positions))
    assert logits.shape == (2, 2, 30)
    gathered = np.take_along_axis(sequence, positions[..., None], axis=1)
    transform = head.transform
    h = np.maximum(
        gathered @ ops.convert_to_numpy(transform.kernel) + ops.convert_to_numpy(transform.bias), 0
    )
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-12)
    expected = h @ ops.convert_to_numpy(embedding.embeddings).T
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    # Tied: changing the embedding changes the head's output.
    embedding.embeddings.assign(np.zeros((30, 8), "float32"))
    np.testing.assert_allclose(ops.convert_to_numpy(head(sequence, positions)), 0, atol=1e-6)


def test_config_round_trip():
    embedding = keras.layers.Embedding(30, 8)
    embedding.build((None,))
    head = MaskedLMHead(embedding, layer_norm_epsilon=1e-6)
    clone = MaskedLMHead.from_config(head.get_config())
    assert clone.get_config() == head.get_config()
    assert clone(np.ones((1, 2, 8), "float32")).shape == (1, 2, 30)
