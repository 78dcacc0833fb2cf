"""Perplexity: the exponential of the mean token cross-entropy, ignoring masked tokens."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_llm")
class Perplexity(keras.metrics.Metric):
    """`exp(sum(w * CE) / sum(w))` over every token seen, where `w` is the sample weight
    (the padding mask), so padded positions do not count.

    Args:
        from_logits: whether predictions are logits (else probabilities).

    Example:
    >>> import numpy as np
    >>> metric = Perplexity()
    >>> metric.update_state(np.array([[1, 2]]), np.zeros((1, 2, 4), "float32"),
    ...                     sample_weight=np.array([[1, 0]]))
    >>> round(float(metric.result()), 4)  # Uniform over 4 tokens.
    4.0
    """

    def __init__(self, from_logits: bool = True, name: str = "perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.from_logits = from_logits
        self.total_loss = self.add_variable((), initializer="zeros", name="total_loss")
        self.total_weight = self.add_variable((), initializer="zeros", name="total_weight")

    def update_state(self, y_true, y_pred, sample_weight=None):
        losses = keras.losses.sparse_categorical_crossentropy(
            y_true, ops.cast(y_pred, "float32"), from_logits=self.from_logits
        )
        weights = (
            ops.ones_like(losses) if sample_weight is None else ops.cast(sample_weight, "float32")
        )
        self.total_loss.assign_add(ops.sum(losses * weights))
        self.total_weight.assign_add(ops.sum(weights))

    def result(self):
        return ops.exp(self.total_loss / ops.maximum(self.total_weight, 1e-9))

    def reset_state(self):
        self.total_loss.assign(0.0)
        self.total_weight.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}
