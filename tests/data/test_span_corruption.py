"""T5 span corruption: noise statistics, exact reconstruction, graphs, reproducibility, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_llm.data import random_spans_noise_mask, span_corruption, span_corruption_dataset

# Sentinels far from the token ids (tokens are 10 .. 10 + length), counting down like T5's.
SENTINELS = [100_000 - k for k in range(200)]


def _spans(mask: np.ndarray) -> list[int]:
    """Lengths of the runs of True."""
    padded = np.concatenate([[False], mask, [False]]).astype(int)
    edges = np.flatnonzero(np.diff(padded))
    return (edges[1::2] - edges[::2]).tolist()


def _reconstruct(inputs: list[int], targets: list[int], sentinels: list[int]) -> list[int]:
    """Puts the span after each sentinel of `targets` back in place of it in `inputs`."""
    is_sentinel = set(sentinels)
    spans, current = {}, None
    for token in targets:
        if token in is_sentinel:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    out = []
    for token in inputs:
        out.extend(spans[token] if token in is_sentinel else [token])
    return out


@pytest.fixture(scope="module")
def corrupted():
    """500 sequences of 100-512 tokens, corrupted in a tf.data pipeline."""
    lengths = np.random.default_rng(0).integers(100, 513, size=500)
    sequences = tf.data.Dataset.from_tensor_slices(lengths).map(lambda n: tf.range(n) + 10)
    pairs = span_corruption_dataset(sequences, SENTINELS, seed=3)
    return lengths, [(p["inputs"].numpy().tolist(), p["targets"].numpy().tolist()) for p in pairs]


def test_noise_statistics(corrupted):
    lengths, pairs = corrupted
    noise_fraction, all_spans = [], []
    for length, (inputs, targets) in zip(lengths, pairs, strict=True):
        num_spans = sum(t in SENTINELS for t in inputs)
        num_noise = len(targets) - num_spans - 1
        assert len(inputs) == length - num_noise + num_spans
        # Exactly T5's counts (numpy and TF both round half to even).
        assert num_noise == round(length * 0.15)
        assert num_spans == max(1, round(num_noise / 3.0))
        noise_fraction.append(num_noise / length)
        sentinel_positions = [i for i, t in enumerate(targets) if t in SENTINELS]
        all_spans.extend(np.diff(sentinel_positions) - 1)
    assert abs(np.mean(noise_fraction) - 0.15) < 0.01
    assert abs(np.mean(all_spans) - 3.0) < 0.1
    assert min(all_spans) >= 1
    # A random segmentation, not fixed lengths.
    assert len(set(all_spans)) > 5


def test_sentinels_in_order_and_exact_reconstruction(corrupted):
    lengths, pairs = corrupted
    for length, (inputs, targets) in zip(lengths, pairs, strict=True):
        in_sentinels = [t for t in inputs if t in SENTINELS]
        target_sentinels = [t for t in targets if t in SENTINELS]
        assert in_sentinels == SENTINELS[: len(in_sentinels)]
        assert target_sentinels == SENTINELS[: len(in_sentinels) + 1]  # plus the final one
        assert targets[0] == SENTINELS[0] and targets[-1] == SENTINELS[len(in_sentinels)]
        # Kept tokens first, a noise span last (T5's interleaving).
        assert inputs[0] == 10 and inputs[-1] == in_sentinels[-1]
        assert _reconstruct(inputs, targets, SENTINELS) == list(range(10, 10 + length))


def test_mask_matches_outputs_and_edge_lengths():
    mask = random_spans_noise_mask(300, seed=[4, 5]).numpy()
    spans = _spans(mask)
    assert mask.sum() == 45 and len(spans) == 15 and not mask[0] and mask[-1]
    out = span_corruption(tf.range(300) + 10, SENTINELS, seed=[4, 5])
    assert len(out["inputs"]) == 300 - 45 + 15
    assert _spans(np.isin(out["targets"].numpy(), SENTINELS, invert=True)) == spans
    # One token: nothing to corrupt. Two tokens: one kept, one corrupted.
    one = span_corruption([7], SENTINELS, seed=0)
    assert one["inputs"].numpy().tolist() == [7] and one["targets"].numpy().tolist() == []
    two = span_corruption([7, 8], SENTINELS, seed=0, end_token_id=1)
    assert two["inputs"].numpy().tolist() == [7, SENTINELS[0], 1]
    assert two["targets"].numpy().tolist() == [SENTINELS[0], 8, SENTINELS[1], 1]


def test_reproducible_and_seed_dependent():
    ids = tf.range(400) + 10
    a = span_corruption(ids, SENTINELS, seed=[1, 2])
    b = span_corruption(ids, SENTINELS, seed=tf.constant([1, 2]))
    c = span_corruption(ids, SENTINELS, seed=[1, 3])
    assert a["inputs"].numpy().tolist() == b["inputs"].numpy().tolist()
    assert a["targets"].numpy().tolist() == b["targets"].numpy().tolist()
    assert a["inputs"].numpy().tolist() != c["inputs"].numpy().tolist()
    # Unseeded calls draw a fresh seed.
    assert len({tuple(span_corruption(ids, SENTINELS)["inputs"].numpy()) for _ in range(3)}) > 1


def test_tf_function_and_tf_data_match_eager():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([2], tf.int32)])
    def corrupt(ids, seed):
        return span_corruption(ids, SENTINELS, seed=seed, end_token_id=1)

    sequences = [tf.range(n) + 10 for n in (5, 50, 333)]
    for i, ids in enumerate(sequences):
        eager = span_corruption(ids, SENTINELS, seed=[9, i], end_token_id=1)
        graph = corrupt(ids, tf.constant([9, i]))
        for key in ("inputs", "targets"):
            assert graph[key].numpy().tolist() == eager[key].numpy().tolist()
            assert eager[key].numpy()[-1] == 1

    dataset = tf.data.Dataset.from_generator(
        lambda: (s.numpy() for s in sequences), output_signature=tf.TensorSpec([None], tf.int32)
    )
    mapped = list(span_corruption_dataset(dataset, SENTINELS, seed=9, end_token_id=1))
    for i, (ids, pair) in enumerate(zip(sequences, mapped, strict=True)):
        eager = span_corruption(ids, SENTINELS, seed=[9, i], end_token_id=1)
        assert pair["inputs"].numpy().tolist() == eager["inputs"].numpy().tolist()
        assert pair["targets"].numpy().tolist() == eager["targets"].numpy().tolist()


def test_errors():
    ids = tf.range(100)
    for density in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="noise_density"):
            span_corruption(ids, SENTINELS, noise_density=density)
    with pytest.raises(ValueError, match="mean_noise_span_length"):
        span_corruption(ids, SENTINELS, mean_noise_span_length=0.5)
    with pytest.raises(ValueError, match="empty"):
        span_corruption(tf.zeros([0], tf.int32), SENTINELS)
    with pytest.raises(ValueError, match="1-D"):
        span_corruption(tf.zeros([2, 3], tf.int32), SENTINELS)
    # 100 tokens -> 15 noise tokens in 5 spans: 6 sentinels needed (5 + the final one).
    span_corruption(ids, SENTINELS[:6], seed=0)
    with pytest.raises(ValueError, match="too few `sentinel_ids`"):
        span_corruption(ids, SENTINELS[:5], seed=0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def corrupt(ids):
        return span_corruption(ids, SENTINELS[:5], seed=[0, 0])["inputs"]

    with pytest.raises(tf.errors.InvalidArgumentError, match="too few `sentinel_ids`"):
        corrupt(ids)
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty"):
        corrupt(tf.zeros([0], tf.int32))
