"""T5's span-corruption pretraining objective (Raffel et al. 2020, section 3.1.4), in TF ops.

A random ~15% of the tokens, grouped in spans of mean length ~3, is dropped from the input;
each dropped span is replaced by one sentinel (``<extra_id_0>``, ``<extra_id_1>``, ...) and the
target lists each sentinel followed by the tokens it replaced:

    original: Thank you for inviting me to your party last week .
    inputs:   Thank you <extra_id_0> me to your party <extra_id_1> week .
    targets:  <extra_id_0> for inviting <extra_id_1> last <extra_id_2>

The noise mask follows T5's ``random_spans_noise_mask``: the numbers of noise and non-noise
tokens are split into the same number of spans by a uniformly random segmentation, and the
spans are interleaved, non-noise first (so the text always starts with kept tokens and ends
with a noise span). Everything is built from TF ops with stateless randomness, so it runs inside
``tf.data.Dataset.map`` and ``tf.function`` and is reproducible from its seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

_SEED_MAX = 2**31 - 1


def _check(condition: tf.Tensor | bool, message: str) -> list[tf.Operation]:
    """``ValueError`` eagerly (or when known while tracing), else a graph assertion."""
    if isinstance(condition, bool) or tf.executing_eagerly():
        if not bool(condition):
            raise ValueError(message)
        return []
    static = tf.get_static_value(condition)
    if static is not None:
        if not bool(static):
            raise ValueError(message)
        return []
    return [tf.debugging.assert_equal(condition, True, message=message)]


def _as_seed(seed: Any) -> tf.Tensor:
    """A shape-[2] int32 seed for the ``tf.random.stateless_*`` ops."""
    if seed is None:
        # No seed: a fresh random one per call (not reproducible, like unseeded T5 runs).
        return tf.random.uniform([2], maxval=_SEED_MAX, dtype=tf.int32)
    if isinstance(seed, int):
        return tf.constant([seed, 0], tf.int32)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    if seed.shape.rank == 0:
        return tf.stack([seed, 0])
    if seed.shape != [2]:
        raise ValueError(
            f"`seed` must be an int or a shape-[2] int tensor, got shape {seed.shape}."
        )
    return seed


def _random_segmentation(num_items: tf.Tensor, num_segments: tf.Tensor, seed: tf.Tensor):
    """Lengths [num_segments] (all >= 1, summing to num_items), uniform over compositions.

    Cuts are placed before ``num_segments - 1`` of the ``num_items - 1`` inner positions, chosen
    uniformly at random (a random permutation ranks the positions, the lowest ranks are cut).
    """
    scores = tf.random.stateless_uniform([num_items - 1], seed=seed)
    ranks = tf.argsort(tf.argsort(scores))
    is_cut = tf.cast(ranks < num_segments - 1, tf.int32)
    segment_of_item = tf.cumsum(tf.concat([[0], is_cut], axis=0))
    return tf.math.unsorted_segment_sum(
        tf.ones_like(segment_of_item), segment_of_item, num_segments
    )


def random_spans_noise_mask(
    length: tf.Tensor | int,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    seed: Any = None,
) -> tf.Tensor:
    """Boolean mask [length]: True for the tokens to corrupt, in spans (T5's procedure).

    Noise tokens = ``round(length * noise_density)`` (at least 1, at most ``length - 1``); noise
    spans = ``round(noise tokens / mean_noise_span_length)`` (at least 1, and at most the number
    of noise or non-noise tokens, so no span is empty). A length-1 sequence has no noise.

    Example:
    >>> mask = random_spans_noise_mask(20, seed=[1, 2])
    >>> int(tf.reduce_sum(tf.cast(mask, tf.int32)))
    3
    >>> bool(mask[0]), bool(mask[-1])  # kept tokens first, a noise span last
    (False, True)
    """
    seed = _as_seed(seed)
    original_length = tf.cast(length, tf.int32)
    # As T5: a 1-token sequence is treated as 2 tokens (1 kept + 1 noise), then cut back.
    length = tf.maximum(original_length, 2)
    # float64, so the counts are exactly Python's round() (half to even); T5 rounds float32
    # products, which can differ by one near halves (350 * 0.15: 52.5 -> 52; float32 52.500004).
    num_noise = tf.cast(tf.round(tf.cast(length, tf.float64) * noise_density), tf.int32)
    num_noise = tf.clip_by_value(num_noise, 1, length - 1)
    num_spans = tf.cast(tf.round(tf.cast(num_noise, tf.float64) / mean_noise_span_length), tf.int32)
    num_nonnoise = length - num_noise
    num_spans = tf.clip_by_value(num_spans, 1, tf.minimum(num_noise, num_nonnoise))

    noise_seed, nonnoise_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    noise_lengths = _random_segmentation(num_noise, num_spans, noise_seed)
    nonnoise_lengths = _random_segmentation(num_nonnoise, num_spans, nonnoise_seed)
    # Interleave: kept span 0, noise span 0, kept span 1, noise span 1, ...
    interleaved = tf.reshape(tf.stack([nonnoise_lengths, noise_lengths], axis=1), [-1])
    span_starts = tf.cumsum(interleaved)[:-1]
    is_span_start = tf.math.unsorted_segment_sum(tf.ones_like(span_starts), span_starts, length)
    span_index = tf.cumsum(is_span_start)
    return tf.equal(span_index % 2, 1)[:original_length]


def _replace_spans(tokens: tf.Tensor, mask: tf.Tensor, sentinels: tf.Tensor) -> tf.Tensor:
    """Each run of True in ``mask`` -> one sentinel (the k-th run gets ``sentinels[k]``)."""
    previous = tf.concat([[False], mask[:-1]], axis=0)
    first = mask & ~previous
    span_number = tf.cumsum(tf.cast(first, tf.int32)) - 1
    replaced = tf.where(first, tf.gather(sentinels, tf.maximum(span_number, 0)), tokens)
    return tf.boolean_mask(replaced, ~(mask & previous))


def span_corruption(
    token_ids: Any,
    sentinel_ids: Sequence[int] | tf.Tensor,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
    seed: Any = None,
    end_token_id: int | None = None,
) -> dict[str, tf.Tensor]:
    """T5 span corruption of one 1-D sequence of token ids -> ``{"inputs", "targets"}``.

    ``inputs`` is the sequence with each noise span replaced by one sentinel, in order
    (``sentinel_ids[0]`` for the first span); ``targets`` is each sentinel followed by the
    tokens of its span, then a final sentinel (``sentinel_ids[num_spans]``) as in the T5 paper.
    ``end_token_id``, when given, is appended to both. With T5's vocabulary,
    ``sentinel_ids = tokenizer.sentinel_ids(100)`` (``<extra_id_0>`` first).

    Args:
        token_ids: 1-D int tensor (not empty).
        sentinel_ids: sentinel ids in order; at least ``num_spans + 1`` are needed (the final
            one included): with the defaults, about ``0.05 * length + 1``.
        noise_density: fraction of the tokens to corrupt, in (0, 1).
        mean_noise_span_length: mean length of a corrupted span (>= 1).
        seed: an int or a shape-[2] int tensor for the stateless random ops; in a
            ``tf.data`` pipeline derive it from ``(seed, index)`` (see the example) so each
            sequence gets its own, reproducible, noise. ``None``: a fresh random seed.
        end_token_id: appended to ``inputs`` and ``targets`` when given (T5's ``</s>``).

    Returns:
        ``{"inputs": 1-D tensor, "targets": 1-D tensor}`` of the dtype of ``token_ids``.

    Raises:
        ValueError: noise_density outside (0, 1), mean_noise_span_length < 1, empty
            ``token_ids`` or too few sentinels (in a graph, the last two may only be known at
            run time: then ``tf.errors.InvalidArgumentError`` with the same message).

    Example:
    >>> ids = tf.range(10, 30)
    >>> out = span_corruption(ids, sentinel_ids=[99, 98, 97], seed=[0, 1])
    >>> # 3 noise tokens in 1 span: 17 kept + 1 sentinel; 1 sentinel + 3 tokens + final sentinel
    >>> out["inputs"].shape[0], out["targets"].shape[0]
    (18, 5)
    >>> dataset = tf.data.Dataset.from_tensor_slices(tf.reshape(tf.range(60), [3, 20]))
    >>> def corrupt(index, ids):  # seed (7, index): reproducible, different per sequence
    ...     return span_corruption(ids, [99, 98, 97], seed=tf.stack([7, tf.cast(index, tf.int32)]))
    >>> dataset = dataset.enumerate().map(corrupt)
    >>> sorted(next(iter(dataset)))
    ['inputs', 'targets']
    """
    if not 0.0 < float(noise_density) < 1.0:
        raise ValueError(f"`noise_density` must be in (0, 1), got {noise_density}.")
    if float(mean_noise_span_length) < 1.0:
        raise ValueError(f"`mean_noise_span_length` must be >= 1, got {mean_noise_span_length}.")
    tokens = tf.convert_to_tensor(token_ids)
    if tokens.shape.rank != 1:
        raise ValueError(f"`token_ids` must be 1-D, got shape {tokens.shape}.")
    if not tokens.dtype.is_integer:
        raise ValueError(f"`token_ids` must be integers, got {tokens.dtype.name}.")
    sentinels = tf.cast(tf.convert_to_tensor(sentinel_ids), tokens.dtype)
    if sentinels.shape.rank != 1:
        raise ValueError(f"`sentinel_ids` must be 1-D, got shape {sentinels.shape}.")

    length = tf.size(tokens)
    checks = _check(length > 0, "span_corruption: `token_ids` is empty.")
    with tf.control_dependencies(checks):
        mask = random_spans_noise_mask(length, noise_density, mean_noise_span_length, seed)
    first_noise = mask & ~tf.concat([[False], mask[:-1]], axis=0)
    num_spans = tf.reduce_sum(tf.cast(first_noise, tf.int32))
    needed = num_spans + 1
    checks = _check(
        tf.size(sentinels) >= needed,
        "span_corruption: too few `sentinel_ids` for the number of noise spans (one per span "
        "plus the final one); pass more, e.g. tokenizer.sentinel_ids(100).",
    )
    with tf.control_dependencies(checks):
        sentinels = tf.identity(sentinels)

    inputs = _replace_spans(tokens, mask, sentinels)
    # Kept spans -> sentinels gives "<s0> noise0 <s1> noise1 ..." since the text starts with
    # a kept span; the text always ends with a noise span, so the final sentinel is added.
    targets = _replace_spans(tokens, ~mask, sentinels)
    targets = tf.concat([targets, sentinels[num_spans][tf.newaxis]], axis=0)
    # A 1-token sequence has no noise: no sentinel in its targets.
    targets = targets[: tf.where(num_spans > 0, tf.size(targets), 0)]
    if end_token_id is not None:
        end = tf.constant([end_token_id], tokens.dtype)
        inputs = tf.concat([inputs, end], axis=0)
        targets = tf.concat([targets, end], axis=0)
    return {"inputs": inputs, "targets": targets}


def span_corruption_dataset(
    dataset: tf.data.Dataset,
    sentinel_ids: Sequence[int] | tf.Tensor,
    seed: int = 0,
    **kwargs: Any,
) -> tf.data.Dataset:
    """Maps a dataset of 1-D token id sequences through ``span_corruption``.

    Sequence ``i`` uses the seed ``(seed, i)``: the same dataset and seed give the same noise.
    ``kwargs`` go to ``span_corruption`` (``noise_density``, ``end_token_id``, ...).

    Example:
    >>> sequences = tf.data.Dataset.from_tensor_slices(tf.reshape(tf.range(60), [3, 20]))
    >>> pairs = span_corruption_dataset(sequences, [99, 98, 97], seed=1, end_token_id=1)
    >>> [int(example["inputs"][-1]) for example in pairs]
    [1, 1, 1]
    """

    def corrupt(index: tf.Tensor, token_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        pair_seed = tf.stack([tf.constant(seed, tf.int32), tf.cast(index, tf.int32)])
        return span_corruption(token_ids, sentinel_ids, seed=pair_seed, **kwargs)

    return dataset.enumerate().map(corrupt, num_parallel_calls=tf.data.AUTOTUNE)
