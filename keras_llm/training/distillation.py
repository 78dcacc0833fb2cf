"""Knowledge distillation: a frozen BERT teacher trains a smaller BERT student.

The student learns from the labels and from the teacher's output distribution
(Hinton et al., 2015), optionally also from its hidden states and attention maps
(TinyBERT, Jiao et al., 2020). For a batch the loss is

    alpha * hard + (1 - alpha) * soft + hidden_weight * hidden + attention_weight * attention

- `hard`: cross-entropy of the student's logits with the labels (regression,
  `num_classes=1`: the squared error to the label);
- `soft`: `T^2 * KL(softmax(teacher / T) || softmax(student / T))`, T the
  temperature. The `T^2` keeps the soft term's gradients the same size whatever
  T is, since the gradient of the softened KL shrinks as `1 / T^2`. For
  regression the soft term is the squared error to the teacher's prediction
  (T plays no part);
- `hidden`: the mean squared error between the student's hidden states and the
  teacher's hidden states of the mapped layers (the embedding outputs
  included), through a learned linear projection when the widths differ;
- `attention`: the mean squared error between the mapped layers' attention
  probability maps (averaged over heads when the head counts differ).

Padded positions take no part in the intermediate terms. Each student layer `j`
is matched with teacher layer `layer_map[j]`; the default map is uniform
(`uniform_layer_map`), which is also the layer selection `student_from_teacher`
copies, so a copied student starts with every mapped pair equal.

The student starts either at random in a preset's size (`student_from_preset`)
or as a copy of every k-th teacher layer with the embeddings, pooler and head
(`student_from_teacher`, DistilBERT style, Sanh et al., 2019).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
from keras import ops

from keras_llm.models.backbone import Tensor, override_config
from keras_llm.models.bert.bert import Bert, unpack_bert_inputs
from keras_llm.models.bert.bert_classifier import BertClassifier

LAYER_MAPS = ("uniform", "top")


# --- The loss, as pure functions ------------------------------------------------------------
def check_hyperparameters(temperature: float, alpha: float) -> None:
    """Raises a `ValueError` naming the fix for a temperature <= 0 or an alpha outside [0, 1]."""
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or (
        temperature <= 0
    ):
        raise ValueError(
            f"temperature must be a finite number > 0; received {temperature!r}. It divides the "
            "logits: 1 keeps them, values of 2-10 soften the teacher's distribution."
        )
    if not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(
            f"alpha must be in [0, 1]; received {alpha!r}. It weighs the hard-label loss "
            "against the teacher's soft targets (1: labels only, 0: teacher only)."
        )


def _weighted_mean(per_example, sample_weight=None):
    if sample_weight is None:
        return ops.mean(per_example)
    weights = ops.reshape(ops.cast(sample_weight, per_example.dtype), ops.shape(per_example))
    return ops.mean(per_example * weights)


def _is_regression(logits, regression: bool | None) -> bool:
    return logits.shape[-1] == 1 if regression is None else regression


def hard_loss(
    labels: Tensor,
    student_logits: Tensor,
    regression: bool | None = None,
    sample_weight: Tensor | None = None,
) -> Tensor:
    """The loss on the true labels, averaged over the batch.

    Classification: sparse cross-entropy of integer `labels` `[batch]` with
    `student_logits` `[batch, classes]`. Regression (`regression=True`, or by
    default when the logits have one column): the squared error to float `labels`.
    """
    logits = ops.cast(student_logits, "float32")
    if _is_regression(logits, regression):
        labels = ops.reshape(ops.cast(labels, "float32"), (-1,))
        per_example = ops.square(ops.reshape(logits, (-1,)) - labels)
    else:
        labels = ops.reshape(labels, (-1,))
        per_example = keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True
        )
    return _weighted_mean(per_example, sample_weight)


def soft_loss(
    teacher_logits: Tensor,
    student_logits: Tensor,
    temperature: float = 2.0,
    regression: bool | None = None,
    sample_weight: Tensor | None = None,
) -> Tensor:
    """The loss on the teacher's outputs, averaged over the batch.

    Classification: `T^2 * KL(softmax(teacher / T) || softmax(student / T))`.
    Regression: the squared error between the two predictions.
    """
    check_hyperparameters(temperature, 0.0)
    teacher = ops.cast(teacher_logits, "float32")
    student = ops.cast(student_logits, "float32")
    if _is_regression(student, regression):
        per_example = ops.square(ops.reshape(student, (-1,)) - ops.reshape(teacher, (-1,)))
        return _weighted_mean(per_example, sample_weight)
    teacher_log_probs = ops.log_softmax(teacher / temperature, axis=-1)
    student_log_probs = ops.log_softmax(student / temperature, axis=-1)
    per_example = ops.sum(
        ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1
    )
    return float(temperature) ** 2 * _weighted_mean(per_example, sample_weight)


def distillation_loss(
    labels: Tensor,
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 2.0,
    alpha: float = 0.5,
    regression: bool | None = None,
    sample_weight: Tensor | None = None,
) -> Tensor:
    """`alpha * hard_loss + (1 - alpha) * soft_loss`, a scalar.

    Args:
        labels: `[batch]` integer class ids, or float targets for regression.
        student_logits: `[batch, classes]` (`[batch, 1]` for regression).
        teacher_logits: the teacher's logits for the same batch.
        temperature: T > 0; the soft term compares `softmax(logits / T)` and is
            multiplied by `T^2`.
        alpha: the weight of the hard-label term, in [0, 1].
        regression: squared errors instead of cross-entropy and KL; by default
            when the logits have one column.
        sample_weight: optional `[batch]` weights of both terms.

    Example:
    >>> import numpy as np
    >>> student = np.array([[2.0, -1.0], [0.5, 0.5]])
    >>> teacher = np.array([[3.0, -2.0], [-1.0, 1.0]])
    >>> float(distillation_loss(np.array([0, 1]), student, teacher, alpha=1.0)) == float(
    ...     hard_loss(np.array([0, 1]), student))
    True
    """
    check_hyperparameters(temperature, alpha)
    total = 0.0
    if alpha > 0:
        total = alpha * hard_loss(labels, student_logits, regression, sample_weight)
    if alpha < 1:
        total = total + (1.0 - alpha) * soft_loss(
            teacher_logits, student_logits, temperature, regression, sample_weight
        )
    return total


def _check_pairs(student, teacher, what: str) -> None:
    if len(student) != len(teacher) or not student:
        raise ValueError(
            f"{what}: expected two equally long, non-empty lists (one entry per mapped layer); "
            f"received {len(student)} student and {len(teacher)} teacher tensors."
        )


def _masked_mean(values, weights):
    """`sum(values * weights) / sum(weights)` (0 when every weight is 0)."""
    return ops.sum(values * weights) / ops.maximum(ops.sum(weights), 1.0)


def hidden_state_loss(
    student_states: Sequence[Tensor],
    teacher_states: Sequence[Tensor],
    padding_mask: Tensor | None = None,
    projection: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Mean squared error between mapped hidden states, averaged over the layers.

    Args:
        student_states: a list of `[batch, seq, student_width]` tensors.
        teacher_states: a list of `[batch, seq, teacher_width]` tensors, one per
            student tensor.
        padding_mask: `[batch, seq]`, true for real tokens; padded tokens are left
            out of the mean.
        projection: a callable (e.g. `keras.layers.Dense(teacher_width)`) applied
            to each student tensor; needed when the widths differ.

    Example:
    >>> import numpy as np
    >>> s, t = np.zeros((1, 3, 4)), np.ones((1, 3, 4))
    >>> float(hidden_state_loss([s], [t], padding_mask=np.array([[1, 1, 0]])))
    1.0
    """
    _check_pairs(student_states, teacher_states, "hidden_state_loss")
    losses = []
    for student, teacher in zip(student_states, teacher_states, strict=True):
        if projection is not None:
            student = projection(student)
        student = ops.cast(student, "float32")
        teacher = ops.cast(teacher, "float32")
        if student.shape[-1] != teacher.shape[-1]:
            raise ValueError(
                f"hidden_state_loss: student width {student.shape[-1]} differs from teacher "
                f"width {teacher.shape[-1]}; pass `projection=keras.layers.Dense("
                f"{teacher.shape[-1]}, use_bias=False)` (the Distiller adds one by itself)."
            )
        squared = ops.mean(ops.square(student - teacher), axis=-1)  # [batch, seq]
        if padding_mask is None:
            losses.append(ops.mean(squared))
        else:
            losses.append(_masked_mean(squared, ops.cast(padding_mask, "float32")))
    return ops.mean(ops.stack(losses))


def attention_loss(
    student_maps: Sequence[Tensor],
    teacher_maps: Sequence[Tensor],
    padding_mask: Tensor | None = None,
) -> Tensor:
    """Mean squared error between mapped attention probability maps, averaged over the layers.

    Each map is `[batch, heads, query, key]` (`Bert(..., return_attention_scores=True)`).
    With equal head counts the heads are compared one to one; otherwise each
    model's maps are first averaged over its heads. Pairs of positions in which
    the query or the key is padding take no part.

    Example:
    >>> import numpy as np
    >>> uniform = np.full((1, 2, 3, 3), 1 / 3)
    >>> float(attention_loss([uniform], [uniform]))
    0.0
    """
    _check_pairs(student_maps, teacher_maps, "attention_loss")
    losses = []
    for student, teacher in zip(student_maps, teacher_maps, strict=True):
        student = ops.cast(student, "float32")
        teacher = ops.cast(teacher, "float32")
        if len(student.shape) != 4 or len(teacher.shape) != 4:
            raise ValueError(
                "attention_loss: maps must be [batch, heads, query, key]; received shapes "
                f"{student.shape} and {teacher.shape}."
            )
        if student.shape[1] != teacher.shape[1]:
            student = ops.mean(student, axis=1, keepdims=True)
            teacher = ops.mean(teacher, axis=1, keepdims=True)
        squared = ops.mean(ops.square(student - teacher), axis=1)  # [batch, query, key]
        if padding_mask is None:
            losses.append(ops.mean(squared))
        else:
            mask = ops.cast(padding_mask, "float32")
            losses.append(_masked_mean(squared, mask[:, :, None] * mask[:, None, :]))
    return ops.mean(ops.stack(losses))


# --- Layer maps and student initialisation ---------------------------------------------------
def uniform_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """The teacher layer (0-based) matched with each student layer, spread evenly.

    Student layer `j` takes teacher layer `(j + 1) * N // M - 1` (N teacher, M
    student layers): with N = k * M, every k-th layer ending with the top one, as
    in TinyBERT, and the layers `student_from_teacher(teacher, every=k)` copies.

    Example:
    >>> uniform_layer_map(12, 4)
    [2, 5, 8, 11]
    """
    if student_layers < 1 or teacher_layers < 1:
        raise ValueError(
            f"Layer counts must be at least 1; received teacher_layers={teacher_layers}, "
            f"student_layers={student_layers}."
        )
    if student_layers > teacher_layers:
        raise ValueError(
            f"A uniform layer map needs a student no deeper than the teacher; the student has "
            f"{student_layers} layers, the teacher {teacher_layers}. Pass an explicit "
            "layer_map (one teacher layer per student layer) instead."
        )
    return [(j + 1) * teacher_layers // student_layers - 1 for j in range(student_layers)]


def resolve_layer_map(
    layer_map: str | Sequence[int], teacher_layers: int, student_layers: int
) -> list[int]:
    """The teacher layer for each student layer: `"uniform"`, `"top"` (the student's layers
    matched with the teacher's top ones) or an explicit list, checked."""
    if isinstance(layer_map, str):
        if layer_map == "uniform":
            return uniform_layer_map(teacher_layers, student_layers)
        if layer_map == "top":
            if student_layers > teacher_layers:
                raise ValueError(
                    f"layer_map='top' needs a student no deeper than the teacher ({student_layers} "
                    f"> {teacher_layers} layers); pass an explicit layer_map."
                )
            return list(range(teacher_layers - student_layers, teacher_layers))
        raise ValueError(
            f"layer_map must be one of {LAYER_MAPS} or a list of teacher layer indices; "
            f"received {layer_map!r}."
        )
    indices = [int(i) for i in layer_map]
    if len(indices) != student_layers:
        raise ValueError(
            f"layer_map {indices} has {len(indices)} entries; it needs one teacher layer for "
            f"each of the student's {student_layers} layers."
        )
    bad = [i for i in indices if not 0 <= i < teacher_layers]
    if bad:
        raise ValueError(
            f"layer_map {indices} names teacher layers {bad}, but the teacher's layers are "
            f"0..{teacher_layers - 1}."
        )
    return indices


def _check_classifier(model, role: str) -> None:
    if not isinstance(model, BertClassifier) or not isinstance(model.backbone, Bert):
        raise TypeError(
            f"The {role} must be a keras_llm BertClassifier over a Bert backbone; received "
            f"{type(model).__name__}. Wrap a backbone with "
            "`keras_llm.models.BertClassifier(backbone, num_classes=...)`."
        )


def _build(model: BertClassifier) -> None:
    if not model.built:
        model.build({"token_ids": (None, None)})


def student_from_teacher(
    teacher: BertClassifier,
    every: int = 2,
    layers: Sequence[int] | None = None,
    dropout: float | None = None,
) -> BertClassifier:
    """A student that copies every `every`-th teacher layer (DistilBERT-style initialisation).

    The student has the teacher's widths, vocabulary and labels; its embeddings,
    pooler and classification head are copies of the teacher's, and its encoder
    block `j` is a copy of teacher block `layers[j]` (by default
    `every - 1, 2 * every - 1, ...`: the layers `uniform_layer_map` matches, the
    top one included when the depth is a multiple of `every`). For a narrower
    student use `student_from_preset`. Call it under the strategy scope that
    training uses.

    Args:
        teacher: a `BertClassifier`.
        every: keep one teacher layer in `every`.
        layers: the teacher layers to copy, instead of `every`.
        dropout: the student's dropout (encoder and head); by default the teacher's.

    Example:
    >>> import keras_llm
    >>> teacher = keras_llm.models.BertClassifier(
    ...     keras_llm.models.Bert.from_preset("bert_mini", vocab_size=100), num_classes=3)
    >>> student = student_from_teacher(teacher, every=2)
    >>> student.backbone.num_layers, student.num_classes
    (2, 3)
    """
    _check_classifier(teacher, "teacher")
    source = teacher.backbone
    depth = source.num_layers
    if layers is None:
        if not isinstance(every, int) or not 1 <= every <= depth:
            raise ValueError(
                f"every={every!r} must be an integer from 1 to the teacher's {depth} layers "
                "(the student keeps one teacher layer in `every`)."
            )
        layers = list(range(every - 1, depth, every))
    else:
        layers = [int(i) for i in layers]
        bad = [i for i in layers if not 0 <= i < depth]
        if not layers or bad:
            raise ValueError(
                f"layers={layers} must be a non-empty list of teacher layers 0..{depth - 1}."
            )
    _build(teacher)
    config = source.get_config()
    for key in ("name", "trainable"):
        config.pop(key, None)
    config["num_layers"] = len(layers)
    if dropout is not None:
        config = override_config(config, {"dropout": dropout})
    student = BertClassifier(
        Bert.from_config(config),
        num_classes=teacher.num_classes,
        dropout=teacher.dropout if dropout is None else dropout,
        label_names=teacher.label_names,
    )
    _build(student)
    target = student.backbone
    target.embeddings.set_weights(source.embeddings.get_weights())
    for block, index in zip(target.encoder_blocks, layers, strict=True):
        block.set_weights(source.encoder_blocks[index].get_weights())
    target.pooler.set_weights(source.pooler.get_weights())
    student.classifier.set_weights(teacher.classifier.get_weights())
    return student


def student_from_preset(preset: str, teacher: BertClassifier, **overrides) -> BertClassifier:
    """A randomly initialised student of a preset's size, with the teacher's vocabulary and labels.

    The backbone takes the teacher's `vocab_size`, `type_vocab_size` and
    `max_sequence_length`; `overrides` change the preset's other arguments
    (e.g. `num_layers`, `dropout`, `dtype`). Call it under the strategy scope
    that training uses.

    Example:
    >>> import keras_llm
    >>> teacher = keras_llm.models.BertClassifier(
    ...     keras_llm.models.Bert.from_preset("bert_mini", vocab_size=100), num_classes=1)
    >>> student = student_from_preset("bert_tiny", teacher)
    >>> student.backbone.hidden_size, student.backbone.vocab_size, student.num_classes
    (128, 100, 1)
    """
    _check_classifier(teacher, "teacher")
    source = teacher.backbone
    shared = {
        "vocab_size": source.vocab_size,
        "type_vocab_size": source.type_vocab_size,
        "max_sequence_length": source.max_sequence_length,
    }
    for key in ("vocab_size", "type_vocab_size"):
        if key in overrides and overrides[key] != shared[key]:
            raise ValueError(
                f"student_from_preset: {key}={overrides[key]} differs from the teacher's "
                f"{shared[key]}; the student must read the teacher's token and segment ids."
            )
    config = {**shared, **overrides}
    student = BertClassifier(
        Bert.from_preset(preset, **config),
        num_classes=teacher.num_classes,
        label_names=teacher.label_names,
    )
    _build(student)
    return student


# --- The distiller ---------------------------------------------------------------------------
def _replica_scaled(loss):
    """Divides by the replicas in sync under `tf.distribute`, as Keras' own losses do, so the
    summed gradients are those of the global-batch mean."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss / replicas
    return loss


def _bert_classifier_forward(model: BertClassifier, inputs, training, attention: bool) -> dict:
    """The classifier's forward pass, keeping every layer's hidden states (embeddings first) and,
    if asked, attention maps. Mirrors `Bert.call` and `BertClassifier.call`."""
    bert = model.backbone
    token_ids, segment_ids, padding_mask = unpack_bert_inputs(inputs)
    x = bert.embeddings(token_ids, segment_ids=segment_ids, training=training)
    hidden_states, attention_maps = [x], []
    for block in bert.encoder_blocks:
        x = block(x, padding_mask=padding_mask, return_attention_scores=attention,
                  training=training)
        if attention:
            x, scores = x
            attention_maps.append(scores)
        hidden_states.append(x)
    pooled = bert.pooler(x[:, 0, :])
    logits = model.classifier(model.output_dropout(pooled, training=training))
    return {"logits": logits, "hidden_states": hidden_states, "attention_maps": attention_maps}


@keras.saving.register_keras_serializable(package="keras_llm")
class Distiller(keras.Model):
    """Trains a student `BertClassifier` against a frozen teacher `BertClassifier`.

    `compile(optimizer, metrics=...)` then `fit` on the `(inputs, labels)`
    batches a `BertClassifier` takes (labels: class ids, or floats for
    regression). The loss is described in this module's docstring; `fit` logs
    it as `loss` with its parts as `hard_loss`, `soft_loss` (and `hidden_loss`,
    `attention_loss` when on). Metrics given to `compile` see the student's
    logits.

    The teacher is frozen (`teacher.trainable = False`), runs in inference
    mode and gets no gradient; only the student (and the hidden-state
    projection) train. `distiller.student` is an ordinary `BertClassifier` for
    evaluation, `save` and export: the teacher is no part of its weights.
    Calling the distiller returns a dict with the student's `logits` and the
    teacher's `teacher_logits` (and the mapped intermediate tensors when those
    terms are on). Build it, its teacher and student under the strategy scope
    that training uses.

    Args:
        teacher: a `BertClassifier` (trained).
        student: a `BertClassifier` with the teacher's vocabulary, segment
            vocabulary and number of labels.
        temperature: T > 0 of the soft term.
        alpha: weight of the hard-label term in [0, 1]; the soft term has `1 - alpha`.
        hidden_weight: weight of the hidden-state MSE (0: off). When the widths
            differ, a learned `Dense(teacher_width, use_bias=False)` maps the
            student's states; it belongs to the distiller, not the student.
        attention_weight: weight of the attention-map MSE (0: off).
        layer_map: which teacher layer each student layer learns from in the
            intermediate terms: `"uniform"` (default, `uniform_layer_map`),
            `"top"` (the teacher's top layers) or a list with one teacher layer
            index per student layer.

    Example:
    >>> import numpy as np, keras, keras_llm
    >>> teacher = keras_llm.models.BertClassifier(
    ...     keras_llm.models.Bert.from_preset("bert_tiny", vocab_size=100), num_classes=2)
    >>> distiller = Distiller(teacher, student_from_teacher(teacher, every=2),
    ...                       temperature=2.0, alpha=0.5, hidden_weight=1.0)
    >>> distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    >>> x = {"token_ids": np.random.randint(0, 100, (4, 8))}
    >>> history = distiller.fit(x, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    >>> sorted(history.history)
    ['hard_loss', 'hidden_loss', 'loss', 'soft_loss']
    >>> distiller.student.backbone.num_layers
    1
    """

    def __init__(
        self,
        teacher: BertClassifier,
        student: BertClassifier,
        temperature: float = 2.0,
        alpha: float = 0.5,
        hidden_weight: float = 0.0,
        attention_weight: float = 0.0,
        layer_map: str | Sequence[int] = "uniform",
        **kwargs,
    ):
        _check_classifier(teacher, "teacher")
        _check_classifier(student, "student")
        if student is teacher:
            raise ValueError("The teacher and the student are the same model; build a separate "
                             "student (`student_from_teacher` or `student_from_preset`).")
        check_hyperparameters(temperature, alpha)
        for name, value in (("hidden_weight", hidden_weight),
                            ("attention_weight", attention_weight)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0 (0 turns the term off); "
                                 f"received {value!r}.")
        t, s = teacher.backbone, student.backbone
        if t.vocab_size != s.vocab_size:
            raise ValueError(
                f"The teacher has a vocabulary of {t.vocab_size} token ids and the student "
                f"{s.vocab_size}: both must read the same token ids. Build the student with "
                "`student_from_preset(preset, teacher)` or `student_from_teacher(teacher)`, or "
                f"with `Bert.from_preset(..., vocab_size={t.vocab_size})`."
            )
        if t.type_vocab_size != s.type_vocab_size:
            raise ValueError(
                f"The teacher has {t.type_vocab_size} segment ids and the student "
                f"{s.type_vocab_size}; pass type_vocab_size={t.type_vocab_size} to the student."
            )
        if teacher.num_classes != student.num_classes:
            raise ValueError(
                f"The teacher predicts {teacher.num_classes} label(s) and the student "
                f"{student.num_classes}; build the student with num_classes="
                f"{teacher.num_classes}."
            )
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.hidden_weight = float(hidden_weight)
        self.attention_weight = float(attention_weight)
        self.layer_map = layer_map if isinstance(layer_map, str) else [int(i) for i in layer_map]
        self.regression = teacher.num_classes == 1
        self.intermediate = self.hidden_weight > 0 or self.attention_weight > 0
        self.teacher_layers: list[int] | None = (
            resolve_layer_map(layer_map, t.num_layers, s.num_layers) if self.intermediate
            else None
        )
        _build(teacher)
        _build(student)
        teacher.trainable = False
        self.teacher = teacher
        self.student = student
        self.hidden_projection = None
        if self.hidden_weight > 0 and s.hidden_size != t.hidden_size:
            self.hidden_projection = keras.layers.Dense(
                t.hidden_size, use_bias=False, dtype=student.dtype_policy,
                name="hidden_projection")
        self.hard_loss_tracker = keras.metrics.Mean(name="hard_loss")
        self.soft_loss_tracker = keras.metrics.Mean(name="soft_loss")
        self.hidden_loss_tracker = (keras.metrics.Mean(name="hidden_loss")
                                    if self.hidden_weight > 0 else None)
        self.attention_loss_tracker = (keras.metrics.Mean(name="attention_loss")
                                       if self.attention_weight > 0 else None)
        self.build({"token_ids": (None, None)})

    def build(self, input_shape=None):
        _build(self.teacher)
        _build(self.student)
        if self.hidden_projection is not None and not self.hidden_projection.built:
            self.hidden_projection.build((None, None, self.student.backbone.hidden_size))
        self.built = True

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """Like `keras.Model.compile`, without a `loss`: the distiller computes its own."""
        if loss is not None:
            raise ValueError(
                "Distiller.compile takes no `loss`: the loss is the distillation loss set by "
                "temperature, alpha, hidden_weight and attention_weight. Pass only the "
                "optimizer (and metrics, which see the student's logits)."
            )
        if kwargs.get("loss_weights") is not None:
            raise ValueError("Distiller.compile takes no `loss_weights`; set alpha, "
                             "hidden_weight and attention_weight instead.")
        kwargs.pop("loss_weights", None)
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)

    def call(self, inputs, training=None):
        if not self.intermediate:
            return {
                "logits": self.student(inputs, training=training),
                "teacher_logits": ops.stop_gradient(self.teacher(inputs, training=False)),
            }
        attention = self.attention_weight > 0
        teacher = _bert_classifier_forward(self.teacher, inputs, False, attention)
        student = _bert_classifier_forward(self.student, inputs, training, attention)
        outputs = {
            "logits": student["logits"],
            "teacher_logits": ops.stop_gradient(teacher["logits"]),
        }
        if self.hidden_weight > 0:
            # Index 0 is the embedding output; block i's output is at i + 1.
            outputs["student_hidden_states"] = student["hidden_states"]
            outputs["teacher_hidden_states"] = [
                ops.stop_gradient(teacher["hidden_states"][i])
                for i in [0] + [j + 1 for j in self.teacher_layers]
            ]
        if attention:
            outputs["student_attention_maps"] = student["attention_maps"]
            outputs["teacher_attention_maps"] = [
                ops.stop_gradient(teacher["attention_maps"][j]) for j in self.teacher_layers
            ]
        return outputs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is None:
            raise ValueError("The Distiller needs `(inputs, labels)` batches: the hard term "
                             "compares the student with the labels.")
        hard = hard_loss(y, y_pred["logits"], self.regression, sample_weight)
        soft = soft_loss(y_pred["teacher_logits"], y_pred["logits"], self.temperature,
                         self.regression, sample_weight)
        self.hard_loss_tracker.update_state(hard)
        self.soft_loss_tracker.update_state(soft)
        total = self.alpha * hard + (1.0 - self.alpha) * soft
        padding_mask = x.get("padding_mask") if isinstance(x, dict) else None
        if self.hidden_weight > 0:
            hidden = hidden_state_loss(y_pred["student_hidden_states"],
                                       y_pred["teacher_hidden_states"], padding_mask,
                                       projection=self.hidden_projection)
            self.hidden_loss_tracker.update_state(hidden)
            total = total + self.hidden_weight * hidden
        if self.attention_weight > 0:
            attention = attention_loss(y_pred["student_attention_maps"],
                                       y_pred["teacher_attention_maps"], padding_mask)
            self.attention_loss_tracker.update_state(attention)
            total = total + self.attention_weight * attention
        for extra in self.losses:  # Regularizers, if the student has any.
            total = total + ops.cast(extra, "float32")
        return _replica_scaled(total)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        logits = y_pred["logits"] if isinstance(y_pred, dict) else y_pred
        return super().compute_metrics(x, y, logits, sample_weight=sample_weight)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student": keras.saving.serialize_keras_object(self.student),
            "temperature": self.temperature,
            "alpha": self.alpha,
            "hidden_weight": self.hidden_weight,
            "attention_weight": self.attention_weight,
            "layer_map": self.layer_map,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
