"""BERT's pretraining heads: masked language modelling and next-sentence prediction."""

from __future__ import annotations

import keras

from keras_llm.layers import MaskedLMHead, clone_initializer
from keras_llm.models.bert.bert import Bert
from keras_llm.models.task import Task


@keras.saving.register_keras_serializable(package="keras_llm")
class BertPretrainer(Task):
    """Masked-LM logits at `mask_positions` and next-sentence logits on `[CLS]`.

    Inputs: BERT's dict plus `mask_positions` `[batch, num_masks]` (optional;
    without it the MLM head scores every position). Returns
    `{"mlm_logits": [batch, num_masks, vocab], "nsp_logits": [batch, 2]}`. The MLM
    output projection is the backbone's token embedding matrix (tied).

    Args:
        backbone: a `Bert`.

    Example:
    >>> import numpy as np, keras_llm
    >>> bert = keras_llm.models.Bert.from_preset("bert_tiny")
    >>> pretrainer = keras_llm.models.BertPretrainer(bert)
    >>> out = pretrainer({"token_ids": np.array([[101, 103, 2003, 102]]),
    ...                   "mask_positions": np.array([[1]])})
    >>> tuple(out["mlm_logits"].shape), tuple(out["nsp_logits"].shape)
    ((1, 1, 30522), (1, 2))
    """

    backbone_class = Bert

    def __init__(self, backbone: Bert, **kwargs):
        super().__init__(backbone, **kwargs)
        initializer = keras.initializers.TruncatedNormal(stddev=backbone.initializer_range)
        self.masked_lm_head = MaskedLMHead(
            backbone.token_embedding,
            activation=backbone.hidden_act,
            layer_norm_epsilon=backbone.layer_norm_epsilon,
            kernel_initializer=initializer,
            dtype=self.dtype_policy,
            name="masked_lm_head",
        )
        self.next_sentence_head = keras.layers.Dense(
            2, kernel_initializer=clone_initializer(initializer), dtype=self.dtype_policy,
            name="next_sentence",
        )

    def build_head(self, input_shape):
        self.masked_lm_head.build((None, None, self.backbone.hidden_size))
        self.next_sentence_head.build((None, self.backbone.hidden_size))

    def call(self, inputs, training=None):
        outputs = self.backbone(inputs, training=training)
        mlm_logits = self.masked_lm_head(
            outputs["sequence_output"], mask_positions=inputs.get("mask_positions")
        )
        return {
            "mlm_logits": mlm_logits,
            "nsp_logits": self.next_sentence_head(outputs["pooled_output"]),
        }

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> BertPretrainer:
        """Loads a local checkpoint; the `cls.*` heads too when it has them."""
        from keras_llm.convert.bert import load_bert_task

        return load_bert_task(cls, path, **kwargs)
