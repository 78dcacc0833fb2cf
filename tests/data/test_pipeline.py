"""`shuffle_epochs`: a shuffled order that depends only on the seed and the position."""

import doctest

import tensorflow as tf

from keras_llm.data import pipeline
from keras_llm.data.pipeline import shuffle_epochs


def take(dataset, count):
    return [int(x) for x in dataset.take(count)]


def test_order_is_a_function_of_the_position_only():
    examples = tf.data.Dataset.range(10)
    dataset = shuffle_epochs(examples, seed=7)
    first = take(dataset, 30)
    next(iter(dataset))  # An extra iterator (as Keras makes under a strategy) changes nothing.
    tf.random.set_seed(123)  # Nor does the global seed.
    assert take(dataset, 30) == first
    epochs = [first[i:i + 10] for i in range(0, 30, 10)]
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2]  # A fresh order every epoch.
    assert take(shuffle_epochs(examples, seed=8), 10) != epochs[0]
    assert take(dataset.skip(13), 5) == first[13:18]  # Resuming at a step: same batches.


def test_empty_dataset_is_an_error():
    try:
        shuffle_epochs(tf.data.Dataset.range(0), seed=1)
    except ValueError as error:
        assert "non-empty" in str(error)
    else:
        raise AssertionError("expected a ValueError")


def test_docstring_example():
    assert doctest.testmod(pipeline).failed == 0


def test_structures_and_variable_length_examples():
    words = tf.ragged.constant([["a"], ["b", "c"], ["d", "e", "f"]])
    examples = tf.data.Dataset.from_tensor_slices(({"words": words}, [0, 1, 2]))
    seen = [(list(x["words"].numpy()), int(y)) for x, y in shuffle_epochs(examples, 0).take(3)]
    assert sorted((len(w), y) for w, y in seen) == [(1, 0), (2, 1), (3, 2)]
