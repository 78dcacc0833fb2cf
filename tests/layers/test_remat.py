"""`rematerialized_call` and the `remat` option of Bert and Gpt: the same gradients (dropout
included), the same training, on each backend."""

import keras
import numpy as np
import pytest

import keras_llm
from keras_llm.layers import TransformerEncoderBlock, rematerialized_call


def gradients(loss_of_outputs, model, inputs) -> list[np.ndarray]:
    """d loss / d trainable weights of `model(inputs, training=True)`, on TF or JAX."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = loss_of_outputs(model(inputs, training=True))
            return tape.gradient(loss, model.trainable_variables)

        return [np.asarray(tf.convert_to_tensor(g)) for g in step()]
    if keras.backend.backend() == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss(trainable):
            outputs, _ = model.stateless_call(trainable, non_trainable, inputs, training=True)
            return loss_of_outputs(outputs)

        return [np.asarray(g) for g in jax.jit(jax.grad(loss))(
            [v.value for v in model.trainable_variables])]
    pytest.skip(f"no gradient helper for the {keras.backend.backend()} backend")


class RematBlock(keras.layers.Layer):
    """An encoder block called through `rematerialized_call`."""

    def __init__(self, block, **kwargs):
        super().__init__(**kwargs)
        self.block = block
        self.built = block.built

    def call(self, x, training=None):
        return rematerialized_call(self.block, x, training=training)


def _block(dropout: float) -> TransformerEncoderBlock:
    keras.utils.set_random_seed(0)
    block = TransformerEncoderBlock(num_heads=2, intermediate_size=32, dropout=dropout)
    block.build((2, 6, 16))
    return block


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_rematerialized_block_has_the_plain_gradients_and_seed_state(dropout):
    x = np.random.default_rng(0).normal(size=(2, 6, 16)).astype("float32")

    def loss(y):
        return keras.ops.sum(y * keras.ops.arange(16, dtype="float32"))

    plain, remat = _block(dropout), _block(dropout)
    expected = gradients(loss, plain, x)
    got = gradients(loss, RematBlock(remat), x)
    assert len(got) == len(expected) > 0
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)

    # Eagerly, the forward output and the generators' states after the call match too.
    np.testing.assert_allclose(
        np.asarray(rematerialized_call(remat, x, training=True)),
        np.asarray(plain(x, training=True)), atol=1e-6)
    states = [[np.asarray(v.value) for v in b.non_trainable_variables
               if v.path.endswith("seed_generator_state")] for b in (plain, remat)]
    assert all(np.array_equal(a, b) for a, b in zip(*states, strict=True))


def _batch(vocab_size: int):
    rng = np.random.default_rng(0)
    return {"token_ids": rng.integers(1, vocab_size, (2, 16)).astype("int32"),
            "padding_mask": np.array([[1] * 16, [1] * 10 + [0] * 6], "int32")}


@pytest.mark.parametrize("family, preset", [("Bert", "bert_tiny"), ("Gpt", "gpt2_tiny")])
def test_backbone_remat_trains_like_the_plain_backbone(family, preset):
    """Through `train_on_batch` (each backend's own training step), with dropout: the same
    losses, weights and dropout seed states after three steps."""
    results = []
    for remat in (False, True):
        keras.utils.set_random_seed(0)
        backbone = getattr(keras_llm.models, family).from_preset(preset, dropout=0.1,
                                                                 remat=remat)
        if family == "Bert":
            model = keras_llm.models.BertClassifier(backbone, num_classes=2)
            labels = np.array([0, 1], "int32")
            model.compile(optimizer=keras.optimizers.AdamW(1e-3),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        else:  # GptCausalLM's own loss: the next token, padding ignored.
            model = keras_llm.models.GptCausalLM(backbone)
            labels = None
            model.compile(optimizer=keras.optimizers.AdamW(1e-3))
        inputs = _batch(backbone.vocab_size)
        losses = [float(np.asarray(model.train_on_batch(inputs, labels)).reshape(-1)[0])
                  for _ in range(3)]
        weights = [np.asarray(v.value) for v in model.trainable_variables]
        seeds = [np.asarray(v.value) for v in model.non_trainable_variables
                 if v.path.endswith("seed_generator_state")]
        results.append((losses, weights, seeds))
    (plain_losses, plain_weights, plain_seeds), (losses, weights, seeds) = results
    np.testing.assert_allclose(losses, plain_losses, rtol=1e-5)
    assert len(set(plain_losses)) == 3  # The steps trained.
    for a, b in zip(plain_weights, weights, strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)
    assert seeds and all(np.array_equal(a, b) for a, b in zip(plain_seeds, seeds, strict=True))


@pytest.mark.parametrize("family, preset", [("Bert", "bert_tiny"), ("Gpt", "gpt2_tiny")])
def test_remat_round_trips_through_the_config(family, preset):
    cls = getattr(keras_llm.models, family)
    backbone = cls.from_preset(preset, remat=True)
    assert backbone.get_config()["remat"] is True
    assert cls.from_config(backbone.get_config()).remat is True
    assert cls.from_preset(preset).remat is False
