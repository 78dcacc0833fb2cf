"""BERT with a dense layer on every token: named-entity recognition and tagging."""

from __future__ import annotations

import keras

from keras_llm.models.bert.bert import Bert
from keras_llm.models.task import Task


@keras.saving.register_keras_serializable(package="keras_llm")
class BertTokenClassifier(Task):
    """Per-token logits `[batch, seq, num_classes]`.

    Args:
        backbone: a `Bert`.
        num_classes: number of tags (e.g. 9 for CoNLL-2003 IOB tags).
        dropout: dropout on the sequence output; `None` uses the backbone's.
        label_names: optional tag names in id order.

    Example:
    >>> import numpy as np, keras_llm
    >>> bert = keras_llm.models.Bert.from_preset("bert_tiny")
    >>> tagger = keras_llm.models.BertTokenClassifier(bert, num_classes=9)
    >>> tuple(tagger({"token_ids": np.array([[101, 3000, 2003, 102]])}).shape)
    (1, 4, 9)
    """

    backbone_class = Bert

    def __init__(
        self,
        backbone: Bert,
        num_classes: int,
        dropout: float | None = None,
        label_names: list[str] | None = None,
        **kwargs,
    ):
        super().__init__(backbone, **kwargs)
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(
                f"{len(label_names)} label names given for num_classes={num_classes}."
            )
        self.num_classes = num_classes
        self.dropout = backbone.dropout if dropout is None else dropout
        self.label_names = list(label_names) if label_names is not None else None
        self.output_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        # Per-token heads never reach the pooler: freeze it rather than warn of missing gradients.
        backbone.pooler.trainable = False
        self.classifier = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=backbone.initializer_range
            ),
            dtype=self.dtype_policy,
            name="classifier",
        )

    def build_head(self, input_shape):
        self.classifier.build((None, None, self.backbone.hidden_size))

    def call(self, inputs, training=None):
        sequence = self.backbone(inputs, training=training)["sequence_output"]
        return self.classifier(self.output_dropout(sequence, training=training))

    def head_config(self):
        return {
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "label_names": self.label_names,
        }

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> BertTokenClassifier:
        """Loads a local checkpoint; the `classifier.*` head too when it has one."""
        from keras_llm.convert.bert import load_bert_task

        return load_bert_task(cls, path, **kwargs)
