"""GLUE metrics against scikit-learn and scipy, on random and crafted inputs."""

import doctest
import warnings

import numpy as np
import pytest

# The references (the [test] extra): a missing one fails the run instead of skipping it.
import scipy.stats as stats  # noqa: E402
import sklearn.metrics as sk_metrics  # noqa: E402

from keras_llm.metrics import (
    accuracy,
    classification_metrics,
    f1_score,
    matthews_corrcoef,
    pearson_corrcoef,
    spearman_corrcoef,
)
from keras_llm.metrics import classification as classification_module


def _random_label_pairs(seed: int, count: int = 200):
    """Label/prediction pairs of many sizes and class counts, some very imbalanced."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        size = int(rng.integers(1, 60))
        num_classes = int(rng.integers(2, 5))
        weights = rng.dirichlet(np.full(num_classes, 0.5))
        labels = rng.choice(num_classes, size=size, p=weights)
        predictions = np.where(
            rng.random(size) < 0.6, labels, rng.choice(num_classes, size=size, p=weights)
        )
        yield labels, predictions, num_classes


def test_docstring_examples_run():
    assert doctest.testmod(classification_module, optionflags=doctest.ELLIPSIS).failed == 0


def test_accuracy_f1_and_mcc_match_scikit_learn_on_random_inputs():
    for labels, predictions, num_classes in _random_label_pairs(seed=0):
        assert accuracy(labels, predictions) == pytest.approx(
            sk_metrics.accuracy_score(labels, predictions), abs=1e-12)
        # Binary F1 of each class against the rest, as MRPC/QQP report it for class 1.
        for positive in range(num_classes):
            binary_labels, binary_predictions = labels == positive, predictions == positive
            expected = sk_metrics.f1_score(binary_labels, binary_predictions, zero_division=0.0)
            assert f1_score(labels, predictions, positive_label=positive) == pytest.approx(
                expected, abs=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn warns on constant inputs.
            expected = sk_metrics.matthews_corrcoef(labels, predictions)
        assert matthews_corrcoef(labels, predictions) == pytest.approx(expected, abs=1e-12)


def test_binary_f1_matches_scikit_learn_on_glue_sized_inputs():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=408)  # MRPC dev size.
    predictions = np.where(rng.random(408) < 0.8, labels, 1 - labels)
    assert f1_score(labels, predictions) == pytest.approx(
        sk_metrics.f1_score(labels, predictions), abs=1e-12)
    assert f1_score(labels, predictions, positive_label=0) == pytest.approx(
        sk_metrics.f1_score(labels, predictions, pos_label=0), abs=1e-12)


def test_crafted_classification_cases():
    # Hand-computed: tp=2, fp=1, fn=1 -> F1 = 4 / 6.
    assert f1_score([1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(2 / 3)
    # MCC of the confusion [[tn=1, fp=1], [fn=1, tp=2]] = (2*1 - 1*1) / sqrt(3*2*3*2) = 1/6.
    assert matthews_corrcoef([1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(1 / 6)
    assert matthews_corrcoef([0, 1, 0, 1], [0, 1, 0, 1]) == 1.0
    assert matthews_corrcoef([0, 1, 0, 1], [1, 0, 1, 0]) == -1.0
    # String labels work like integers.
    assert matthews_corrcoef(["a", "b", "b"], ["a", "b", "a"]) == pytest.approx(
        sk_metrics.matthews_corrcoef(["a", "b", "b"], ["a", "b", "a"]))
    assert f1_score(["yes", "no"], ["yes", "yes"], positive_label="yes") == pytest.approx(2 / 3)
    # A column (N, 1) is read as a vector.
    assert accuracy(np.array([[1], [0]]), [1, 1]) == 0.5


@pytest.mark.parametrize(
    "labels, predictions",
    [([0, 1, 0, 1], [1, 1, 1, 1]), ([1, 1, 1], [0, 1, 0]), ([2, 2], [2, 2]), ([1], [0])],
)
def test_degenerate_cases_return_zero_like_scikit_learn(labels, predictions):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected_mcc = sk_metrics.matthews_corrcoef(labels, predictions)
        expected_f1 = sk_metrics.f1_score(
            np.equal(labels, 1), np.equal(predictions, 1), zero_division=0.0)
    assert matthews_corrcoef(labels, predictions) == expected_mcc == 0.0
    assert f1_score(labels, predictions) == pytest.approx(expected_f1)
    assert f1_score([0, 0], [0, 0]) == 0.0  # No positive anywhere: 0.0, not NaN.


def test_correlations_match_scipy_on_random_inputs_with_ties():
    rng = np.random.default_rng(2)
    for trial in range(200):
        size = int(rng.integers(2, 80))
        x = rng.normal(size=size)
        y = 0.5 * x + rng.normal(size=size)
        if trial % 2:  # STS-B style scores rounded to a few levels: many ties.
            x, y = np.round(x * 2) / 2, np.round(y)
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        assert pearson_corrcoef(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-10)
        assert spearman_corrcoef(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-10)


def test_spearman_ranks_ties_by_their_average_rank():
    x = [3.0, 1.0, 3.0, 2.0, 3.0, 1.0]
    y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    np.testing.assert_allclose(classification_module._average_ranks(np.array(x)),
                               stats.rankdata(x))
    assert spearman_corrcoef(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    # Monotone but not linear: Spearman 1, Pearson below 1.
    assert spearman_corrcoef([1, 2, 3, 4], [1, 10, 100, 1000]) == pytest.approx(1.0)
    assert pearson_corrcoef([1, 2, 3, 4], [1, 10, 100, 1000]) < 0.9


def test_constant_input_gives_zero_correlation_not_nan():
    for function in (pearson_corrcoef, spearman_corrcoef):
        assert function([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0
        assert function([0.1, 0.2, 0.3], [0.7, 0.7, 0.7]) == 0.0
        assert function([5.0], [2.0]) == 0.0


def test_results_are_python_floats():
    labels, predictions = np.array([0, 1, 1]), np.array([0, 1, 0])
    for value in [accuracy(labels, predictions), f1_score(labels, predictions),
                  matthews_corrcoef(labels, predictions), pearson_corrcoef(labels, predictions),
                  spearman_corrcoef(labels, predictions),
                  *classification_metrics(labels, predictions, ["accuracy", "f1"]).values()]:
        assert type(value) is float


def test_classification_metrics_collects_named_metrics():
    labels, predictions = [1, 0, 1, 1, 0], [1, 0, 0, 1, 1]
    result = classification_metrics(labels, predictions, ["accuracy", "f1", "matthews_corrcoef"])
    assert list(result) == ["accuracy", "f1", "matthews_corrcoef"]
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["f1"] == pytest.approx(sk_metrics.f1_score(labels, predictions))
    assert result["matthews_corrcoef"] == pytest.approx(
        sk_metrics.matthews_corrcoef(labels, predictions))
    scores, gold = [0.1, 2.5, 3.0, 4.9], [0.0, 2.0, 3.8, 5.0]
    result = classification_metrics(gold, scores, ("pearson", "spearman"))
    assert result == pytest.approx({"pearson": stats.pearsonr(gold, scores)[0],
                                    "spearman": stats.spearmanr(gold, scores)[0]})
    assert classification_metrics(gold, scores, "spearman") == {"spearman": pytest.approx(1.0)}


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match=r"Unknown metric.*'acc'.*choose from.*'accuracy'"):
        classification_metrics([1], [1], ["acc"])
    with pytest.raises(ValueError, match="No metric names"):
        classification_metrics([1], [1], [])
    with pytest.raises(ValueError, match="3 values.*2.*pair up"):
        accuracy([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="empty"):
        matthews_corrcoef([], [])
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*argmax"):
        f1_score([0, 1], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="scalar"):
        accuracy(1, 1)
    with pytest.raises(ValueError, match="non-finite.*index 1"):
        pearson_corrcoef([1.0, float("nan"), 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="need numbers"):
        spearman_corrcoef(["a", "b"], [1.0, 2.0])
