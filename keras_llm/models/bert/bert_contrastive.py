"""BERT sentence embeddings trained contrastively (SimCSE, Gao et al., 2021).

Unsupervised SimCSE encodes every sentence of a batch twice; dropout makes the two
encodings differ, each sentence's second encoding is its positive and the other
sentences' encodings are its negatives (in-batch negatives). Supervised SimCSE uses
real (anchor, positive) pairs, optionally with a hard negative per anchor. Both are one
loss here: cross-entropy over cosine similarities divided by a temperature, with the
matching positive as the target.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_llm.models.backbone import Tensor
from keras_llm.models.bert.bert import Bert, unpack_bert_inputs
from keras_llm.models.task import Task

POOLINGS = ("cls", "mean", "pooled")
_NOT_PAIRED = (
    "BertContrastive's loss compares anchors with positives, so it is fitted and evaluated on "
    "paired dicts {'anchor': bert_inputs, 'positive': bert_inputs} (optionally 'negative'); "
    "for unsupervised SimCSE pass BertContrastive.two_views(inputs) "
    "(in tf.data: dataset.map(BertContrastive.two_views))."
)
_HAS_LABELS = (
    "BertContrastive trains without labels (each anchor's positive is its target); pass only "
    "the paired inputs to fit/evaluate, not y."
)
#: The keys of a paired input (and of the paired output).
PAIR_KEYS = ("anchor", "positive", "negative")


def l2_normalize(x, epsilon: float = 1e-12):
    """`x / max(||x||, sqrt(epsilon))` along the last axis."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), epsilon))


def is_pair_input(inputs) -> bool:
    """Whether `inputs` is a paired dict (`anchor`, `positive`, optional `negative`)."""
    return isinstance(inputs, dict) and "anchor" in inputs


@keras.saving.register_keras_serializable(package="keras_llm")
class BertContrastive(Task):
    """L2-normalised sentence embeddings `[batch, dim]`, trained with a contrastive loss.

    Called on BERT's input dict (`token_ids`, optional `segment_ids` and
    `padding_mask`) it returns unit-norm embeddings, so the cosine similarity of
    two sentences is the dot product of their embeddings. Called on a paired dict
    `{"anchor": bert_inputs, "positive": bert_inputs}` (and optionally
    `"negative"`: one hard negative per anchor) it returns a dict of embeddings
    with the same keys.

    Training (`compile()` needs no loss; `fit` takes the paired dicts, no labels):
    row `i` of the anchors should match row `i` of the positives among all the
    batch's positives (and negatives): the loss is the mean cross-entropy of
    `cos(anchor_i, candidate_j) / temperature` over candidates `j`, with target
    `j = i`. For unsupervised SimCSE pass each sentence as both anchor and positive
    (`BertContrastive.two_views(inputs)`): the two encodings differ only by
    dropout. The in-batch top-1 retrieval accuracy is reported as `accuracy`.
    Under a multi-replica strategy the negatives are those of each replica's batch.

    Args:
        backbone: a `Bert`.
        pooling: `"cls"` (the `[CLS]` hidden state), `"mean"` (the mean over
            real tokens, as sentence-transformers does) or `"pooled"` (the
            backbone's tanh pooler on `[CLS]`). With `"cls"` and `"mean"` the
            backbone's unused pooler is made non-trainable.
        temperature: the similarities are divided by this before the softmax
            (SimCSE: 0.05).
        projection_dim: if set, a dense layer of this width after pooling
            (SimCSE's MLP with `projection_dim=hidden_size`); `None` for none.
        projection_activation: the projection's activation.

    Example:
    >>> import numpy as np, keras_llm
    >>> bert = keras_llm.models.Bert.from_preset("bert_tiny")
    >>> model = keras_llm.models.BertContrastive(bert, pooling="mean")
    >>> inputs = {"token_ids": np.array([[101, 7592, 102, 0], [101, 2088, 2003, 102]]),
    ...           "padding_mask": np.array([[1, 1, 1, 0], [1, 1, 1, 1]])}
    >>> embeddings = model(inputs)
    >>> tuple(embeddings.shape)
    (2, 128)
    >>> np.linalg.norm(np.asarray(embeddings), axis=-1).round(4).tolist()
    [1.0, 1.0]
    >>> model.compile(optimizer="adam")
    >>> history = model.fit(model.two_views(inputs), epochs=1, verbose=0)
    """

    backbone_class = Bert

    def __init__(
        self,
        backbone: Bert,
        pooling: str = "cls",
        temperature: float = 0.05,
        projection_dim: int | None = None,
        projection_activation: str | None = "tanh",
        **kwargs,
    ):
        super().__init__(backbone, **kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; received {pooling!r}.")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive; received {temperature}.")
        if projection_dim is not None and projection_dim < 1:
            raise ValueError(
                f"projection_dim must be a positive width or None; received {projection_dim}."
            )
        self.pooling = pooling
        self.temperature = float(temperature)
        self.projection_dim = projection_dim
        self.projection_activation = projection_activation
        self.projection = None
        if projection_dim is not None:
            self.projection = keras.layers.Dense(
                projection_dim,
                activation=projection_activation,
                kernel_initializer=keras.initializers.TruncatedNormal(
                    stddev=backbone.initializer_range
                ),
                dtype=self.dtype_policy,
                name="projection",
            )
        if pooling != "pooled":
            # The loss never reaches the pooler: freeze it rather than warn of missing gradients.
            backbone.pooler.trainable = False
        self.retrieval_accuracy = keras.metrics.Mean(name="accuracy")

    @property
    def embedding_dim(self) -> int:
        """The width of the embeddings."""
        return self.projection_dim or self.backbone.hidden_size

    def build(self, input_shape=None):
        if isinstance(input_shape, dict) and "anchor" in input_shape:
            input_shape = input_shape["anchor"]
        return super().build(input_shape)

    def build_head(self, input_shape):
        if self.projection is not None:
            self.projection.build((None, self.backbone.hidden_size))

    def embed(self, inputs: dict[str, Tensor], training: bool | None = None) -> Tensor:
        """Unit-norm float32 embeddings `[batch, dim]` of one BERT input dict."""
        _, _, padding_mask = unpack_bert_inputs(inputs)
        outputs = self.backbone(inputs, training=training)
        if self.pooling == "pooled":
            pooled = outputs["pooled_output"]
        elif self.pooling == "cls":
            pooled = outputs["sequence_output"][:, 0, :]
        else:
            sequence = ops.cast(outputs["sequence_output"], "float32")
            mask = ops.expand_dims(ops.cast(padding_mask, "float32"), -1)
            # Clamped like sentence-transformers: an all-padding row gives zeros, not NaN.
            pooled = ops.sum(sequence * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1e-9)
        if self.projection is not None:
            pooled = self.projection(pooled)
        return l2_normalize(ops.cast(pooled, "float32"))

    def call(self, inputs, training=None):
        if not is_pair_input(inputs):
            return self.embed(inputs, training=training)
        check_pair_keys(inputs)
        return {key: self.embed(inputs[key], training=training)
                for key in PAIR_KEYS if key in inputs}

    @staticmethod
    def two_views(inputs) -> dict:
        """`{"anchor": inputs, "positive": inputs}`: unsupervised SimCSE's training input.

        Works on numpy arrays and inside `tf.data.Dataset.map`.
        """
        return {"anchor": inputs, "positive": inputs}

    def similarity_logits(self, embeddings: dict[str, Tensor]) -> Tensor:
        """`cos(anchor_i, candidate_j) / temperature`, `[batch, batch]` (or `[batch, 2 batch]`
        with negatives: the positives' columns first)."""
        candidates = embeddings["positive"]
        if "negative" in embeddings:
            candidates = ops.concatenate([candidates, embeddings["negative"]], axis=0)
        return ops.matmul(embeddings["anchor"], ops.transpose(candidates)) / self.temperature

    def contrastive_loss(self, embeddings: dict[str, Tensor],
                         sample_weight: Tensor | None = None) -> Tensor:
        """The mean (or `sample_weight`-weighted mean) over anchors of the cross-entropy
        of `similarity_logits` with the matching positive as the target."""
        if not isinstance(embeddings, dict) or "positive" not in embeddings:
            raise ValueError(_NOT_PAIRED)
        logits = self.similarity_logits(embeddings)
        targets = ops.expand_dims(ops.arange(ops.shape(logits)[0], dtype="int32"), -1)
        per_anchor = -ops.take_along_axis(ops.log_softmax(logits, axis=-1), targets, axis=-1)
        per_anchor = ops.squeeze(per_anchor, -1)
        if sample_weight is None:
            return ops.mean(per_anchor)
        weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        return ops.sum(per_anchor * weight) / ops.maximum(ops.sum(weight), 1e-12)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is not None:
            raise ValueError(_HAS_LABELS)
        loss = self.contrastive_loss(y_pred, sample_weight)
        if self.losses:  # Regularization losses, if any layer has them.
            loss = loss + ops.cast(ops.sum(self.losses), loss.dtype)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict) and "positive" in y_pred:
            logits = self.similarity_logits(y_pred)
            hits = ops.cast(
                ops.argmax(logits, axis=-1) == ops.arange(ops.shape(logits)[0]), "float32")
            self.retrieval_accuracy.update_state(hits, sample_weight=sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def fit(self, x=None, y=None, *args, **kwargs):
        check_training_data(x, y)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        check_training_data(x, y)
        return super().evaluate(x, y, *args, **kwargs)

    def compile(self, optimizer="adamw", loss=None, **kwargs):
        """Like `keras.Model.compile`; the contrastive loss is built in, so `loss` must be
        left out."""
        if loss is not None:
            raise ValueError(
                "BertContrastive computes its own contrastive loss; compile it without `loss` "
                f"(received loss={loss!r})."
            )
        super().compile(optimizer=optimizer, **kwargs)

    def head_config(self):
        return {
            "pooling": self.pooling,
            "temperature": self.temperature,
            "projection_dim": self.projection_dim,
            "projection_activation": self.projection_activation,
        }

    @classmethod
    def from_pretrained(
        cls, path: str, backbone_kwargs: dict | None = None, **kwargs
    ) -> BertContrastive:
        """Loads a local BERT checkpoint (Hugging Face or Google) as the backbone.

        Head tensors in the checkpoint (`classifier.*`, `cls.*`, ...) are skipped;
        the projection, if any, starts randomly initialised. `backbone_kwargs`
        override the checkpoint's config (e.g. `dropout`, `dtype`); `kwargs` go to
        the constructor (`pooling`, `temperature`, ...).
        """
        from keras_llm.convert.bert import load_bert_backbone

        task = cls(load_bert_backbone(path, **(backbone_kwargs or {})), **kwargs)
        task.build()
        return task


def check_pair_keys(inputs: dict) -> None:
    """Raises a `ValueError` unless `inputs` has `anchor`, `positive` and at most `negative`."""
    keys = set(inputs)
    if "positive" not in keys or keys - set(PAIR_KEYS):
        raise ValueError(
            f"A paired input to BertContrastive has the keys 'anchor', 'positive' and optionally "
            f"'negative', each a BERT input dict; received keys {sorted(keys)}."
        )


def check_training_data(x, y) -> None:
    """Rejects unpaired or labelled data before `fit`/`evaluate` start (a failure inside a
    compiled JAX step would leave the model's variables unusable)."""
    if y is not None:
        raise ValueError(_HAS_LABELS)
    element = x
    if hasattr(x, "element_spec"):  # A tf.data.Dataset: check the structure of its elements.
        element = x.element_spec
        if isinstance(element, tuple):
            if len(element) > 1 and element[1] is not None:
                raise ValueError(_HAS_LABELS)
            element = element[0]
    if isinstance(element, dict):
        if not is_pair_input(element):
            raise ValueError(_NOT_PAIRED)
        check_pair_keys(element)
