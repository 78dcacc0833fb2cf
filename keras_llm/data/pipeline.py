"""Input pipelines whose order depends only on the position, so training resumes exactly."""

from __future__ import annotations

import tensorflow as tf


def shuffle_epochs(examples: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """Repeats a finite dataset of examples forever, epoch `e` shuffled with seed `(seed, e)`.

    Unlike `shuffle(reshuffle_each_iteration=True)`, whose order depends on how
    many iterators were made before (Keras makes an extra one to build a
    distributed model), the order here is a pure function of the position: a
    run on one device, on several replicas, or resumed at step `n` sees the
    same batches. Batch the result.

    Example:
    >>> import tensorflow as tf
    >>> order = shuffle_epochs(tf.data.Dataset.range(4), seed=1).take(8)
    >>> sorted(int(x) for x in order.take(4))  # every epoch is a permutation
    [0, 1, 2, 3]
    """
    if int(examples.cardinality()) in (0, tf.data.INFINITE_CARDINALITY):
        raise ValueError("shuffle_epochs needs a finite, non-empty dataset of examples.")
    # All examples as one (possibly ragged) batch, gathered in a stateless permutation per
    # epoch: `Dataset.shuffle` with a per-epoch tensor seed fails under a global seed of 0.
    table = examples.ragged_batch(2**31 - 1).get_single_element()
    first = tf.nest.flatten(table)[0]
    size = int(first.nrows() if isinstance(first, tf.RaggedTensor) else tf.shape(first)[0])

    def epoch_order(epoch):
        seed_pair = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.random.experimental.stateless_shuffle(tf.range(size, dtype=tf.int64),
                                                         seed=seed_pair)
        return tf.data.Dataset.from_tensor_slices(order)

    def lookup(index):
        return tf.nest.map_structure(lambda column: tf.gather(column, index), table)

    return tf.data.Dataset.counter().flat_map(epoch_order).map(lookup)
