import numpy as np
import pytest
from keras import ops

from keras_llm.generation import (
    GreedySampler,
    RandomSampler,
    TopKSampler,
    TopPSampler,
    get_sampler,
)
from keras_llm.generation.samplers import uniform_noise

PROBS = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02], "float32")


def draws(sampler, n=2000):
    logits = np.tile(np.log(PROBS), (n, 1))
    return ops.convert_to_numpy(sampler.select(logits, seed=7, step=3))


def test_greedy_is_argmax():
    logits = np.array([[0.1, 3.0, 2.0], [5.0, -1.0, 0.0]], "float32")
    np.testing.assert_array_equal(ops.convert_to_numpy(GreedySampler().select(logits, 0, 0)),
                                  [1, 0])


def test_random_sampler_follows_the_distribution():
    counts = np.bincount(draws(RandomSampler()), minlength=len(PROBS)) / 2000
    np.testing.assert_allclose(counts, PROBS, atol=0.04)


def test_temperature_sharpens():
    cold = np.bincount(draws(RandomSampler(temperature=0.25)), minlength=7) / 2000
    assert cold[0] > 0.75


def test_top_k_only_picks_the_k_most_likely():
    picked = draws(TopKSampler(k=3))
    assert set(picked) == {0, 1, 2}
    counts = np.bincount(picked, minlength=3)[:3] / 2000
    np.testing.assert_allclose(counts, PROBS[:3] / PROBS[:3].sum(), atol=0.04)


@pytest.mark.parametrize("p, allowed", [(0.5, {0, 1}), (0.65, {0, 1}), (0.66, {0, 1, 2}),
                                        (0.01, {0})])
def test_top_p_only_picks_the_nucleus(p, allowed):
    assert set(draws(TopPSampler(p=p))) == allowed


def test_seed_and_step_make_draws_reproducible_and_distinct():
    logits = np.zeros((4, 1000), "float32")
    sampler = RandomSampler()
    a = ops.convert_to_numpy(sampler.select(logits, 1, 5))
    np.testing.assert_array_equal(a, ops.convert_to_numpy(sampler.select(logits, 1, 5)))
    assert not np.array_equal(a, ops.convert_to_numpy(sampler.select(logits, 2, 5)))
    assert not np.array_equal(a, ops.convert_to_numpy(sampler.select(logits, 1, 6)))


def test_noise_is_uniform():
    noise = ops.convert_to_numpy(uniform_noise((64, 1000), 3, 1))
    assert 0 < noise.min() and noise.max() < 1
    assert abs(noise.mean() - 0.5) < 0.01
    np.testing.assert_allclose(np.histogram(noise, bins=10, range=(0, 1))[0] / noise.size,
                               0.1, atol=0.005)


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        RandomSampler(temperature=0)
    with pytest.raises(ValueError, match="top_k"):
        TopKSampler(k=0)
    with pytest.raises(ValueError, match="top_p"):
        TopPSampler(p=1.5)
    with pytest.raises(ValueError, match="Unknown strategy"):
        get_sampler("nucleus")
    assert isinstance(get_sampler("top_p", top_p=0.8), TopPSampler)
