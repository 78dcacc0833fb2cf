"""Model-parallel layouts: a Megatron-style `keras.distribution.LayoutMap` for each backbone.

Each Transformer block is split over the mesh's model axis as Megatron-LM splits it
(Shoeybi et al., 2019): the first matmul of each sublayer is column-parallel (its
output features are split: the fused query/key/value projection, the cross-attention
query and key/value projections, the first and the gate feed-forward kernels, with
their biases), the second is row-parallel (its input features are split: the
attention output and the second feed-forward kernel, whose biases and the following
norms are replicated). Token and position embeddings are split along the hidden axis
(or, with `vocab_parallel=True`, the token embeddings and untied LM head along the
vocabulary). Everything small (norms, the row-parallel biases, segment embeddings,
T5's relative position buckets) is replicated by an explicit rule, so that every
variable of our models matches exactly one rule and none is replicated by accident;
a task's small head (a classifier) matches no rule and is replicated.

Keys are regular expressions matched in full against `variable.path` (which starts
with the model's own name, `bert/...` or `bert_classifier/bert/...`, so every rule
starts with `.*/`). The same rules serve every backend: a `DeviceMesh` and its
`LayoutMap` are plain objects (only JAX's `ModelParallel` uses them today).

Optimizer slots (AdamW's moments) take the layout of their variable, so they are
split the same way.

One difference from Megatron: our fused QKV kernel orders its columns as all query
heads, then all key heads, then all value heads, so a contiguous column split does not
keep whole heads together on one device. XLA then gathers the projected queries, keys
and values over the model axis, and each model device computes every head's attention
scores (the projections, the attention output and the feed-forward network stay
split). A head-major column order would keep attention head-local; in the compiled
forward pass of a BERT block split over two devices, that gather is the one collective
it removes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras

# Placeholders in the rule tables below: M is the model axis; F is the batch axis when
# weights are also split over the data-parallel replicas (`fsdp=True`), else None.
M = "model"
F = "fsdp"

# (what it is, regex, axes). Shared by every Transformer block.
_BLOCK_RULES: tuple[tuple[str, str, tuple], ...] = (
    # Every block projection stores its kernel `[out, in]` (`OutputMajorDense`): a
    # column-parallel kernel splits its first axis, a row-parallel one its second.
    ("fused query/key/value kernel (column)", r".*/qkv/kernel", (M, F)),
    ("fused query/key/value bias", r".*/qkv/bias", (M,)),
    ("cross-attention query kernel (column)", r".*/query/kernel", (M, F)),
    ("cross-attention query bias", r".*/query/bias", (M,)),
    ("cross-attention key/value kernel (column)", r".*/key_value/kernel", (M, F)),
    ("cross-attention key/value bias", r".*/key_value/bias", (M,)),
    ("attention output kernel (row)", r".*attention/output/kernel", (F, M)),
    ("attention output bias", r".*attention/output/bias", (None,)),
    ("feed-forward input kernel (column)", r".*/feed_forward/(?:intermediate|gate)/kernel",
     (M, F)),
    ("feed-forward input bias", r".*/feed_forward/(?:intermediate|gate)/bias", (M,)),
    ("feed-forward output kernel (row)", r".*/feed_forward/output/kernel", (F, M)),
    ("feed-forward output bias", r".*/feed_forward/output/bias", (None,)),
    ("normalization", r".*(?:_norm|/layer_norm)/(?:gamma|beta|scale)", (None,)),
)

# Token embeddings `[vocab, hidden]`: split along hidden (default) or vocabulary.
_TOKEN_EMBEDDING = r".*/token_embedding/embeddings"
_POSITION_EMBEDDING = ("position embeddings", r".*/position_embedding/embeddings", (None, M))

_FAMILY_RULES: dict[str, tuple[tuple[str, str, tuple], ...]] = {
    "Bert": (
        _POSITION_EMBEDDING,
        ("segment embeddings", r".*/segment_embedding/embeddings", (None, None)),
        ("pooler kernel (column)", r".*/pooler/kernel", (F, M)),
        ("pooler bias", r".*/pooler/bias", (M,)),
        ("masked-LM transform kernel (column)", r".*/masked_lm_head/transform/kernel", (F, M)),
        ("masked-LM transform bias", r".*/masked_lm_head/transform/bias", (M,)),
    ),
    "Gpt": (_POSITION_EMBEDDING,),
    "T5": (
        ("relative position buckets", r".*_position_bias/embeddings", (None, None)),
    ),
}

FAMILIES = tuple(_FAMILY_RULES)


def _family_name(family) -> str:
    name = family
    if not isinstance(family, str):  # A backbone class or model, or a task model.
        backbone = getattr(family, "backbone", family)
        name = getattr(backbone, "preset_family", None)
    if name not in _FAMILY_RULES:
        raise ValueError(
            f"No model-parallel layout for {family!r}; layouts exist for the backbones "
            f"{list(FAMILIES)} (pass the name, the class or a model, e.g. `Bert`).")
    return name


def layout_rules(family, vocab_parallel: bool = False) -> list[tuple[str, str, tuple]]:
    """The rules of a family's layout map as `(description, regex, axes)` triples.

    Axes hold `"model"` for the model axis, `"fsdp"` for a dimension that
    `fsdp=True` splits over the batch axis, and `None` for replicated ones; this
    needs no mesh and no backend (tests check rules against variable paths with it).

    Args:
        family: `"Bert"`, `"Gpt"` or `"T5"`, or a backbone class or model.
        vocab_parallel: split the token embedding (and T5's untied LM head, and
            BERT's masked-LM output bias) along the vocabulary instead of the
            hidden axis.

    Example:
    >>> rules = layout_rules("Gpt")
    >>> [axes for _, regex, axes in rules if regex == r".*/qkv/kernel"]
    [('model', 'fsdp')]
    """
    name = _family_name(family)
    rules = list(_BLOCK_RULES)
    if vocab_parallel:
        rules.append(("token embeddings (vocabulary)", _TOKEN_EMBEDDING, (M, None)))
    else:
        rules.append(("token embeddings (hidden)", _TOKEN_EMBEDDING, (None, M)))
    rules.extend(_FAMILY_RULES[name])
    if name == "Bert":
        rules.append(("masked-LM output bias", r".*/masked_lm_head/output_bias",
                      (M,) if vocab_parallel else (None,)))
    if name == "T5":  # T5 v1.1's untied LM head `[hidden, vocab]`.
        rules.append(("LM head kernel", r".*/lm_head/kernel",
                      (F, M) if vocab_parallel else (M, F)))
    return rules


def get_layout_map(
    family,
    device_mesh: keras.distribution.DeviceMesh,
    model_axis: str = "model",
    batch_axis: str | None = "batch",
    fsdp: bool = False,
    vocab_parallel: bool = False,
) -> keras.distribution.LayoutMap:
    """A Megatron-style `LayoutMap` for a backbone family and its task models.

    Pass it to `keras.distribution.ModelParallel(layout_map=..., batch_dim_name=batch_axis)`
    and set that distribution before building the model. Every split dimension must
    divide by its mesh axis: the hidden and feed-forward widths do for the usual
    sizes; GPT-2's vocabulary (50257) does not, so keep `vocab_parallel=False` there.

    Args:
        family: `"Bert"`, `"Gpt"` or `"T5"`, or a backbone class or model.
        device_mesh: a mesh with a `model_axis` (and a `batch_axis` when `fsdp`).
        model_axis: the mesh axis the kernels are split over.
        batch_axis: the data-parallel mesh axis. Weights are replicated along it,
            unless `fsdp`.
        fsdp: also split the other (hidden) dimension of every block kernel over
            `batch_axis` (ZeRO-3 / fully sharded data parallel): less memory per
            device for weights and optimizer slots, at the cost of gathering each
            kernel in every step.
        vocab_parallel: split the token embedding along the vocabulary (see
            `layout_rules`); the tied LM heads then give vocabulary-split logits.

    Returns:
        A `keras.distribution.LayoutMap` over `device_mesh`.

    Raises:
        ValueError: for an unknown family, an axis the mesh lacks, or `fsdp`
            without a distinct batch axis.

    Example:
    >>> import keras
    >>> mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"],
    ...                                      devices=[f"cpu:{i}" for i in range(4)])
    >>> layout_map = get_layout_map("Bert", mesh)
    >>> layout_map["bert/encoder_block_0/attention/qkv/kernel"].axes
    ('model', None)
    >>> layout_map["bert/encoder_block_0/feed_forward/output/kernel"].axes
    (None, 'model')
    """
    names = list(device_mesh.axis_names)
    if model_axis not in names:
        raise ValueError(
            f"The device mesh has the axes {names}, not the model axis {model_axis!r}. Build "
            f"it as DeviceMesh((data, model), ['batch', {model_axis!r}]) or pass "
            "`model_axis=` one of its axes.")
    if batch_axis is not None and batch_axis not in names:
        raise ValueError(
            f"The device mesh has the axes {names}, not the batch axis {batch_axis!r}. Pass "
            "`batch_axis=` its data-parallel axis (or None if it has none).")
    if batch_axis == model_axis:
        raise ValueError(f"batch_axis and model_axis are both {model_axis!r}; the data and "
                         "the model must be split over different mesh axes.")
    if fsdp and batch_axis is None:
        raise ValueError("fsdp=True splits weights over the batch axis; pass `batch_axis`.")
    substitute = {M: model_axis, F: batch_axis if fsdp else None, None: None}
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for _, regex, axes in layout_rules(family, vocab_parallel=vocab_parallel):
        layout_map[regex] = tuple(substitute[axis] for axis in axes)
    return layout_map


def matching_rules(path: str, rules: Sequence[tuple[str, str, tuple]]) -> list[str]:
    """The descriptions of the `rules` whose regex matches `path` in full (as `LayoutMap`
    matches keys); more than one means the layout map would reject the variable.

    Example:
    >>> matching_rules("gpt/decoder_block_0/feed_forward/output/kernel", layout_rules("Gpt"))
    ['feed-forward output kernel (row)']
    """
    return [description for description, regex, _ in rules if re.fullmatch(regex, path)]


def layout_problem(path: str, shape: Sequence[int], axes: Sequence[str | None],
                   device_mesh: keras.distribution.DeviceMesh) -> str | None:
    """Why a weight cannot take a layout (a message naming it and the fix), or `None`.

    A split dimension must divide by the size of its mesh axis; JAX rejects the
    weight otherwise without saying which one it is.

    Example:
    >>> mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"],
    ...                                      devices=[f"cpu:{i}" for i in range(4)])
    >>> print(layout_problem("gpt/embeddings/token_embedding/embeddings", (50257, 64),
    ...                      ("model", None), mesh))  # doctest: +ELLIPSIS
    gpt/embeddings/token_embedding/embeddings: dimension 0 (50257) does not divide ...
    """
    if len(axes) != len(shape):
        return (f"{path}: the layout {tuple(axes)} has {len(axes)} axes but the weight has "
                f"shape {tuple(shape)}; fix the layout map rule that matches it.")
    sizes = dict(zip(device_mesh.axis_names, device_mesh.shape, strict=True))
    for dimension, (size, axis) in enumerate(zip(shape, axes, strict=True)):
        if axis is None or size is None:
            continue
        if axis not in sizes:
            return (f"{path}: its layout splits over {axis!r}, which the device mesh "
                    f"{list(device_mesh.axis_names)} lacks.")
        if size % sizes[axis]:
            return (
                f"{path}: dimension {dimension} ({size}) does not divide over the {sizes[axis]} "
                f"devices of the mesh axis {axis!r} (shape {tuple(shape)}). Choose a model "
                "parallelism (mesh axis size) that divides it, e.g. one dividing the hidden, "
                "intermediate and head sizes, or keep the vocabulary unsplit "
                "(vocab_parallel=False).")
    return None
