import keras
import numpy as np
import pytest
from keras import ops

from keras_llm.models import (
    Bert,
    BertClassifier,
    BertPretrainer,
    BertQuestionAnswerer,
    BertTokenClassifier,
)

TINY = dict(vocab_size=100, num_layers=2, num_heads=2, hidden_size=16, intermediate_size=32,
            max_sequence_length=12)
INPUTS = {
    "token_ids": np.array([[2, 10, 11, 3, 0], [2, 20, 3, 30, 3]]),
    "segment_ids": np.array([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]),
    "padding_mask": np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]),
}

TASKS = [
    (lambda b: BertClassifier(b, num_classes=3, label_names=["a", "b", "c"]), (2, 3)),
    (lambda b: BertClassifier(b, num_classes=1), (2, 1)),
    (lambda b: BertTokenClassifier(b, num_classes=5), (2, 5, 5)),
    (lambda b: BertQuestionAnswerer(b), {"start_logits": (2, 5), "end_logits": (2, 5)}),
    (lambda b: BertPretrainer(b), {"mlm_logits": (2, 2, 100), "nsp_logits": (2, 2)}),
]


def inputs_for(task):
    if isinstance(task, BertPretrainer):
        return {**INPUTS, "mask_positions": np.array([[1, 2], [1, 3]])}
    return INPUTS


def flat(outputs):
    if isinstance(outputs, dict):
        return {k: ops.convert_to_numpy(v) for k, v in outputs.items()}
    return {"output": ops.convert_to_numpy(outputs)}


@pytest.mark.parametrize("make, shapes", TASKS)
def test_shapes_config_and_save_round_trip(make, shapes, tmp_path):
    task = make(Bert(**TINY))
    outputs = task(inputs_for(task))
    if isinstance(shapes, dict):
        assert {k: tuple(v.shape) for k, v in outputs.items()} == shapes
    else:
        assert tuple(outputs.shape) == shapes
    clone = type(task).from_config(task.get_config())
    assert clone.get_config() == task.get_config()

    path = tmp_path / "task.keras"
    task.save(path)
    restored = keras.models.load_model(path)
    expected, actual = flat(outputs), flat(restored(inputs_for(task)))
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], atol=1e-6)


def test_pretrainer_ties_mlm_output_to_word_embeddings():
    bert = Bert(**TINY)
    pretrainer = BertPretrainer(bert)
    pretrainer(inputs_for(pretrainer))
    assert pretrainer.masked_lm_head.token_embedding is bert.token_embedding
    # One copy of the embedding matrix among the trainable weights.
    paths = [w.path for w in pretrainer.trainable_weights]
    assert sum("token_embedding" in p for p in paths) == 1


def test_classifier_fits_and_loss_falls():
    keras.utils.set_random_seed(1)
    classifier = BertClassifier(Bert(**TINY, dropout=0.0), num_classes=2)
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 100, size=(64, 8))
    labels = (ids[:, 1] > 50).astype("int32")
    classifier.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = classifier.fit({"token_ids": ids}, labels, batch_size=16, epochs=8, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def test_bad_head_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        BertClassifier(Bert(**TINY), num_classes=0)
    with pytest.raises(ValueError, match="label names"):
        BertTokenClassifier(Bert(**TINY), num_classes=3, label_names=["O"])


@pytest.mark.parametrize("make", [lambda b: BertTokenClassifier(b, num_classes=5),
                                  lambda b: BertQuestionAnswerer(b)])
def test_per_token_heads_freeze_the_unused_pooler(make):
    task = make(Bert(**TINY))
    task(INPUTS)
    assert not task.backbone.pooler.trainable
    assert not any("pooler" in w.path for w in task.trainable_weights)
    restored = type(task).from_config(task.get_config())
    assert not restored.backbone.pooler.trainable
