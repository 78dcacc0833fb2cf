"""A smoke test of the training path on real data: MiniLM fine-tuned on a few hundred SST-2 rows."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm.models import BertClassifier
from keras_llm.tokenizers import BertPreprocessor
from tests.conftest import read_sst2


@pytest.mark.slow
def test_training_loss_falls_on_sst2(shared_data, minilm_dir):
    sentences, labels = read_sst2(shared_data, "train", limit=320)
    preprocessor = BertPreprocessor.from_pretrained(minilm_dir, sequence_length=48)
    dataset = (
        tf.data.Dataset.from_tensor_slices((sentences, labels))
        .batch(32)
        .map(lambda x, y: (preprocessor(x), y))
        .cache()
    )
    classifier = BertClassifier.from_pretrained(minilm_dir, num_classes=2)
    classifier.compile(
        optimizer=keras.optimizers.AdamW(5e-5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start_loss, _ = classifier.evaluate(dataset, verbose=0)
    classifier.fit(dataset.shuffle(10, seed=0), epochs=3, verbose=0)
    end_loss, end_accuracy = classifier.evaluate(dataset, verbose=0)
    assert np.isfinite(end_loss)
    assert end_loss < 0.7 * start_loss, (start_loss, end_loss)
    assert end_accuracy > 0.75
