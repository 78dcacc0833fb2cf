"""T5's learned relative position bias: one scalar per head and distance bucket."""

from __future__ import annotations

import math

import keras
from keras import ops


def relative_position_buckets(
    relative_position, bidirectional: bool, num_buckets: int = 32, max_distance: int = 128
):
    """Maps `key_position - query_position` to bucket ids, as T5 does.

    Half the buckets (per direction when bidirectional) hold exact small
    distances; the rest grow logarithmically up to `max_distance`, beyond
    which all distances share the last bucket. A causal (one-directional)
    bucketing maps every future key to bucket 0.

    Example:
    >>> import numpy as np
    >>> distances = np.array([-200, -3, 0, 3, 200])
    >>> np.asarray(relative_position_buckets(distances, bidirectional=True)).tolist()
    [15, 3, 0, 19, 31]
    >>> np.asarray(relative_position_buckets(distances, bidirectional=False)).tolist()
    [31, 3, 0, 0, 0]
    """
    relative_position = ops.cast(relative_position, "int32")
    buckets = ops.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + ops.cast(relative_position > 0, "int32") * num_buckets
        distance = ops.abs(relative_position)
    else:
        distance = -ops.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # log(d / max_exact) / log(max_distance / max_exact) of the remaining buckets.
    scaled = ops.log(ops.cast(ops.maximum(distance, 1), "float32") / max_exact) / math.log(
        max_distance / max_exact
    )
    large = max_exact + ops.cast(scaled * (num_buckets - max_exact), "int32")
    large = ops.minimum(large, num_buckets - 1)
    return buckets + ops.where(is_small, distance, large)


@keras.saving.register_keras_serializable(package="keras_llm")
class RelativePositionBias(keras.layers.Layer):
    """Returns the additive attention bias `[1, heads, query_length, key_length]`.

    Args:
        num_heads: attention heads (one bias per head and bucket).
        num_buckets: distance buckets.
        max_distance: distance from which all share the last bucket.
        bidirectional: encoder (True) or causal decoder (False) bucketing.

    Example:
    >>> bias = RelativePositionBias(num_heads=4)
    >>> tuple(bias(query_length=3, key_length=5).shape)
    (1, 4, 3, 5)
    """

    def __init__(
        self,
        num_heads: int,
        num_buckets: int = 32,
        max_distance: int = 128,
        bidirectional: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bidirectional = bidirectional

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.num_buckets, self.num_heads), initializer="zeros"
        )
        self.built = True

    def call(self, query_length, key_length, query_offset=0):
        """Bias for queries at `query_offset ...` attending to keys `0 .. key_length - 1`."""
        if not self.built:
            self.build()
        query_positions = ops.arange(query_length) + query_offset
        key_positions = ops.arange(key_length)
        relative = key_positions[None, :] - query_positions[:, None]
        buckets = relative_position_buckets(
            relative, self.bidirectional, self.num_buckets, self.max_distance
        )
        bias = ops.take(ops.cast(self.embeddings, self.compute_dtype), buckets, axis=0)
        return ops.expand_dims(ops.transpose(bias, (2, 0, 1)), 0)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "num_buckets": self.num_buckets,
            "max_distance": self.max_distance,
            "bidirectional": self.bidirectional,
        }
