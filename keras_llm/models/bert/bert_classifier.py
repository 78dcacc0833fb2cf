"""BERT with a dense layer on the pooled `[CLS]` output: GLUE classification and regression."""

from __future__ import annotations

import keras

from keras_llm.models.bert.bert import Bert
from keras_llm.models.task import Task


@keras.saving.register_keras_serializable(package="keras_llm")
class BertClassifier(Task):
    """Sequence classification (`num_classes >= 2`) or regression (`num_classes=1`).

    Returns logits `[batch, num_classes]` (for regression, the predicted value
    `[batch, 1]`). Train with `SparseCategoricalCrossentropy(from_logits=True)`,
    or `MeanSquaredError` for regression (STS-B).

    Args:
        backbone: a `Bert`.
        num_classes: number of labels; 1 for regression.
        dropout: dropout on the pooled output; `None` uses the backbone's.
        label_names: optional names of the labels, in id order (kept for export).

    Example:
    >>> import numpy as np, keras_llm
    >>> bert = keras_llm.models.Bert.from_preset("bert_tiny")
    >>> classifier = keras_llm.models.BertClassifier(bert, num_classes=2)
    >>> tuple(classifier({"token_ids": np.array([[101, 2307, 102]])}).shape)
    (1, 2)
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
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1; received {num_classes}.")
        if label_names is not None and len(label_names) != num_classes:
            raise ValueError(
                f"{len(label_names)} label names given for num_classes={num_classes}."
            )
        self.num_classes = num_classes
        self.dropout = backbone.dropout if dropout is None else dropout
        self.label_names = list(label_names) if label_names is not None else None
        self.output_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.classifier = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=backbone.initializer_range
            ),
            dtype=self.dtype_policy,
            name="classifier",
        )

    def build_head(self, input_shape):
        self.classifier.build((None, self.backbone.hidden_size))

    def call(self, inputs, training=None):
        pooled = self.backbone(inputs, training=training)["pooled_output"]
        return self.classifier(self.output_dropout(pooled, training=training))

    def head_config(self):
        return {
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "label_names": self.label_names,
        }

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> BertClassifier:
        """Loads a local checkpoint; the `classifier.*` head too when it has one.

        Without `num_classes`, it is read from the checkpoint's config
        (`num_labels` / `id2label`).
        """
        from keras_llm.convert.bert import load_bert_task

        return load_bert_task(cls, path, **kwargs)
