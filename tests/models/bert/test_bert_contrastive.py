"""BertContrastive: pooling, unit norm, the SimCSE loss against numpy, training, saving.

Runs on the TensorFlow and the JAX backend (tests/run_all.sh runs tests/models on both).
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_llm.models import Bert, BertContrastive

TINY = dict(vocab_size=100, num_layers=2, num_heads=2, hidden_size=16, intermediate_size=32,
            max_sequence_length=12)
INPUTS = {
    "token_ids": np.array([[2, 10, 11, 3, 0], [2, 20, 3, 30, 3], [2, 40, 41, 42, 3]]),
    "segment_ids": np.array([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]),
    "padding_mask": np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]),
}
OTHER = {
    "token_ids": np.array([[2, 12, 13, 3, 0], [2, 21, 22, 3, 0], [2, 50, 51, 52, 3]]),
    "padding_mask": np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]),
}


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def numpy_loss(anchor, positive, temperature, negative=None, weights=None):
    """SimCSE's loss written out: cross-entropy of cosine / temperature, target the diagonal."""
    anchor, positive = np.float64(anchor), np.float64(positive)
    candidates = positive if negative is None else np.concatenate([positive, negative])
    cosine = unit(anchor) @ unit(candidates).T
    per_anchor = -np.diag(log_softmax(cosine / temperature)[:, : len(anchor)])
    if weights is None:
        return per_anchor.mean()
    return (per_anchor * weights).sum() / weights.sum()


def numpy_pool(sequence, pooled, mask, pooling):
    if pooling == "cls":
        return unit(sequence[:, 0])
    if pooling == "pooled":
        return unit(pooled)
    mask = mask[:, :, None].astype("float32")
    return unit((sequence * mask).sum(1) / mask.sum(1))


@pytest.mark.parametrize("pooling", ["cls", "mean", "pooled"])
def test_shapes_unit_norm_and_pooling_against_numpy(pooling):
    model = BertContrastive(Bert(**TINY), pooling=pooling)
    embeddings = numpy(model(INPUTS))
    assert embeddings.shape == (3, 16) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0, atol=1e-6)
    outputs = model.backbone(INPUTS)
    expected = numpy_pool(numpy(outputs["sequence_output"]), numpy(outputs["pooled_output"]),
                          INPUTS["padding_mask"], pooling)
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)


def test_mean_pooling_ignores_padding():
    model = BertContrastive(Bert(**TINY), pooling="mean")
    short = {"token_ids": np.array([[2, 10, 11, 3]]), "padding_mask": np.array([[1, 1, 1, 1]])}
    padded = {"token_ids": np.array([[2, 10, 11, 3, 0, 0, 0]]),
              "padding_mask": np.array([[1, 1, 1, 1, 0, 0, 0]])}
    np.testing.assert_allclose(numpy(model(padded)), numpy(model(short)), atol=1e-5)


def test_mixed_precision_gives_float32_unit_embeddings():
    model = BertContrastive(Bert(**TINY, dtype="mixed_bfloat16"), pooling="mean",
                            projection_dim=8)
    embeddings = numpy(model(INPUTS))
    assert embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=-1), 1.0, atol=1e-5)


def test_projection_and_paired_outputs():
    model = BertContrastive(Bert(**TINY), pooling="cls", projection_dim=8)
    assert model.embedding_dim == 8
    outputs = model({"anchor": INPUTS, "positive": OTHER, "negative": INPUTS})
    assert sorted(outputs) == ["anchor", "negative", "positive"]
    for value in outputs.values():
        assert tuple(value.shape) == (3, 8)
        np.testing.assert_allclose(np.linalg.norm(numpy(value), axis=-1), 1.0, atol=1e-6)
    # Each view of a pair is the plain call on that view.
    np.testing.assert_allclose(numpy(outputs["positive"]), numpy(model(OTHER)), atol=1e-6)


def test_loss_equals_numpy_on_a_crafted_batch():
    model = BertContrastive(Bert(**TINY), temperature=0.1)
    rng = np.random.default_rng(0)
    anchor, positive, negative = (unit(rng.normal(size=(4, 16)).astype("float32"))
                                  for _ in range(3))
    positive = unit(anchor + positive)  # Positives near their anchors.
    loss = numpy(model.contrastive_loss({"anchor": anchor, "positive": positive}))
    np.testing.assert_allclose(loss, numpy_loss(anchor, positive, 0.1), rtol=1e-5)
    with_negatives = {"anchor": anchor, "positive": positive, "negative": negative}
    np.testing.assert_allclose(numpy(model.contrastive_loss(with_negatives)),
                               numpy_loss(anchor, positive, 0.1, negative), rtol=1e-5)
    weights = np.array([1.0, 0.0, 2.0, 1.0], "float32")
    np.testing.assert_allclose(
        numpy(model.contrastive_loss({"anchor": anchor, "positive": positive}, weights)),
        numpy_loss(anchor, positive, 0.1, weights=weights), rtol=1e-5)
    # A hand-sized case: two orthogonal anchors, each identical to its positive.
    eye = np.eye(2, 16, dtype="float32")
    model = BertContrastive(Bert(**TINY), temperature=0.5)
    expected = np.log(1 + np.exp(-2.0))  # -log(e^2 / (e^2 + e^0)): cosines 1 and 0, over 0.5
    np.testing.assert_allclose(numpy(model.contrastive_loss({"anchor": eye, "positive": eye})),
                               expected, rtol=1e-5)


def test_temperature_scales_the_logits():
    rng = np.random.default_rng(1)
    pair = {"anchor": unit(rng.normal(size=(5, 16))).astype("float32"),
            "positive": unit(rng.normal(size=(5, 16))).astype("float32")}
    losses = []
    for temperature in (1.0, 0.05):
        model = BertContrastive(Bert(**TINY), temperature=temperature)
        logits = numpy(model.similarity_logits(pair))
        np.testing.assert_allclose(logits * temperature, pair["anchor"] @ pair["positive"].T,
                                   rtol=1e-5, atol=1e-6)
        loss = numpy(model.contrastive_loss(pair))
        np.testing.assert_allclose(loss, numpy_loss(pair["anchor"], pair["positive"],
                                                    temperature), rtol=1e-5)
        losses.append(loss)
    assert losses[0] != pytest.approx(losses[1])


def test_evaluate_reports_the_numpy_loss_of_the_model_embeddings():
    model = BertContrastive(Bert(**TINY, dropout=0.0), pooling="mean", temperature=0.05)
    model.compile(optimizer="adam")
    result = model.evaluate({"anchor": INPUTS, "positive": OTHER}, batch_size=3, verbose=0,
                            return_dict=True)
    seq_a, seq_p = (numpy(model.backbone(x)["sequence_output"]) for x in (INPUTS, OTHER))
    anchor = numpy_pool(seq_a, None, INPUTS["padding_mask"], "mean")
    positive = numpy_pool(seq_p, None, OTHER["padding_mask"], "mean")
    np.testing.assert_allclose(result["loss"], numpy_loss(anchor, positive, 0.05), rtol=1e-4)
    hits = (anchor @ positive.T).argmax(-1) == np.arange(3)
    np.testing.assert_allclose(result["accuracy"], hits.mean(), atol=1e-6)


def test_dropout_makes_two_views_only_in_training():
    model = BertContrastive(Bert(**TINY, dropout=0.1))
    views = model(BertContrastive.two_views(INPUTS), training=True)
    assert not np.allclose(numpy(views["anchor"]), numpy(views["positive"]))
    views = model(BertContrastive.two_views(INPUTS), training=False)
    np.testing.assert_allclose(numpy(views["anchor"]), numpy(views["positive"]), atol=1e-6)


def test_config_round_trip_and_keras_save_load(tmp_path):
    model = BertContrastive(Bert(**TINY), pooling="mean", temperature=0.07, projection_dim=8,
                            projection_activation=None)
    expected = numpy(model(INPUTS))
    clone = BertContrastive.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.get_config()["temperature"] == 0.07
    path = tmp_path / "contrastive.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, BertContrastive) and restored.pooling == "mean"
    np.testing.assert_allclose(numpy(restored(INPUTS)), expected, atol=1e-6)


def fit_losses(model, x, epochs=5):
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(x, batch_size=16, epochs=epochs, shuffle=False, verbose=0)
    return history.history


def test_unsupervised_fit_reduces_the_loss():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    ids = np.concatenate([np.full((32, 1), 2), rng.integers(4, 100, size=(32, 7))], axis=1)
    model = BertContrastive(Bert(**TINY, dropout=0.1), pooling="mean", temperature=0.05)
    history = fit_losses(model, BertContrastive.two_views({"token_ids": ids}))
    # Chance is log(16) = 2.77 nats; the two dropout views of a sentence find each other.
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert history["accuracy"][-1] >= 0.9
    # The pooler is not used by "mean" pooling, so it is frozen, not decayed or warned about.
    assert not model.backbone.pooler.trainable


def test_supervised_pairs_with_hard_negatives_fit():
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(1)
    anchors = rng.integers(4, 100, size=(32, 6))
    # A positive shares its anchor's tokens (shuffled); a negative is unrelated.
    positives = rng.permuted(anchors, axis=1)
    negatives = rng.integers(4, 100, size=(32, 6))
    pairs = {"anchor": {"token_ids": anchors}, "positive": {"token_ids": positives},
             "negative": {"token_ids": negatives}}
    model = BertContrastive(Bert(**TINY, dropout=0.0), pooling="mean", projection_dim=16)
    history = fit_losses(model, pairs)
    assert history["loss"][-1] < 0.7 * history["loss"][0]


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="pooling must be one of"):
        BertContrastive(Bert(**TINY), pooling="max")
    with pytest.raises(ValueError, match="temperature must be positive"):
        BertContrastive(Bert(**TINY), temperature=0.0)
    with pytest.raises(ValueError, match="projection_dim"):
        BertContrastive(Bert(**TINY), projection_dim=0)
    model = BertContrastive(Bert(**TINY))
    with pytest.raises(ValueError, match="without `loss`"):
        model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="received keys"):
        model({"anchor": INPUTS, "other": OTHER})
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="two_views"):
        model.fit(INPUTS, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="without labels"):
        model.fit(BertContrastive.two_views(INPUTS), np.ones(3), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="two_views"):
        model.evaluate(INPUTS, verbose=0)
    # The checks run before training starts, so the model is still usable afterwards.
    model.fit(BertContrastive.two_views(INPUTS), epochs=1, verbose=0)


def test_bad_tf_data_is_rejected_before_training():
    tf = pytest.importorskip("tensorflow")
    model = BertContrastive(Bert(**TINY))
    model.compile(optimizer="adam")
    plain = tf.data.Dataset.from_tensor_slices(INPUTS).batch(3)
    with pytest.raises(ValueError, match="two_views"):
        model.fit(plain, epochs=1, verbose=0)
    labelled = tf.data.Dataset.from_tensor_slices(
        (BertContrastive.two_views(INPUTS), np.ones(3))).batch(3)
    with pytest.raises(ValueError, match="without labels"):
        model.fit(labelled, epochs=1, verbose=0)
    paired = plain.map(BertContrastive.two_views)
    assert sorted(paired.element_spec) == ["anchor", "positive"]


@pytest.mark.slow
def test_from_pretrained_mean_pooling_matches_sentence_transformers(minilm_dir):
    """all-MiniLM-L6-v2 is mean-pooled and normalised; its known neighbour structure holds."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from keras_llm.tokenizers import BertPreprocessor

    model = BertContrastive.from_pretrained(minilm_dir, pooling="mean")
    sentences = ["A man is playing a guitar.", "Someone plays the guitar.",
                 "The stock market fell sharply today."]
    inputs = BertPreprocessor.from_pretrained(minilm_dir, sequence_length=16)(sentences)
    inputs = {k: np.asarray(v).astype("int32") for k, v in inputs.items()}
    embeddings = numpy(model(inputs))

    reference = transformers.AutoModel.from_pretrained(minilm_dir).eval()
    with torch.no_grad():
        hidden = reference(input_ids=torch.tensor(inputs["token_ids"], dtype=torch.long),
                           attention_mask=torch.tensor(inputs["padding_mask"], dtype=torch.long),
                           token_type_ids=torch.tensor(inputs["segment_ids"], dtype=torch.long),
                           ).last_hidden_state.numpy()
    expected = numpy_pool(hidden, None, inputs["padding_mask"], "mean")
    np.testing.assert_allclose(embeddings, expected, atol=1e-4)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > 0.6 > 0.2 > similarity[0, 2]
