"""BERT with start/end span logits for extractive question answering (SQuAD)."""

from __future__ import annotations

import keras
from keras import ops

from keras_llm.models.bert.bert import Bert
from keras_llm.models.task import Task


@keras.saving.register_keras_serializable(package="keras_llm")
class BertQuestionAnswerer(Task):
    """Scores every token as the start and the end of the answer span.

    Returns `{"start_logits", "end_logits"}`, each `[batch, seq]`. For SQuAD
    v2.0, the `[CLS]` position (index 0) stands for "no answer": a model
    predicts no answer when `start[0] + end[0]` beats the best span's score.

    Args:
        backbone: a `Bert`.

    Example:
    >>> import numpy as np, keras_llm
    >>> bert = keras_llm.models.Bert.from_preset("bert_tiny")
    >>> qa = keras_llm.models.BertQuestionAnswerer(bert)
    >>> tuple(qa({"token_ids": np.array([[101, 2054, 102, 2023, 102]])})["start_logits"].shape)
    (1, 5)
    """

    backbone_class = Bert

    def __init__(self, backbone: Bert, **kwargs):
        super().__init__(backbone, **kwargs)
        # Per-token heads never reach the pooler: freeze it rather than warn of missing gradients.
        backbone.pooler.trainable = False
        self.qa_outputs = keras.layers.Dense(
            2,
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=backbone.initializer_range
            ),
            dtype=self.dtype_policy,
            name="qa_outputs",
        )

    def build_head(self, input_shape):
        self.qa_outputs.build((None, None, self.backbone.hidden_size))

    def call(self, inputs, training=None):
        sequence = self.backbone(inputs, training=training)["sequence_output"]
        logits = self.qa_outputs(sequence)
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> BertQuestionAnswerer:
        """Loads a local checkpoint; the `qa_outputs.*` head too when it has one."""
        from keras_llm.convert.bert import load_bert_task

        return load_bert_task(cls, path, **kwargs)


def span_logits_to_probabilities(logits, padding_mask):
    """Softmax over the positions of a sequence, ignoring padding."""
    logits = ops.where(ops.cast(padding_mask, "bool"), ops.cast(logits, "float32"), -1e9)
    return ops.softmax(logits, axis=-1)
