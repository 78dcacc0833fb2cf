"""GLUE classification and regression metrics in plain numpy.

Each function follows the reference its GLUE task reports: accuracy, binary F1 (MRPC, QQP) and
Matthews correlation (CoLA) as scikit-learn computes them, Pearson and Spearman correlation
(STS-B) as `scipy.stats` does. Degenerate inputs (a constant column for Matthews or a
correlation) give 0.0, as scikit-learn does, instead of NaN. Every function returns a plain
Python float.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike


def _as_vector(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 0:
        raise ValueError(f"`{name}` is a scalar; pass one value per example (a 1-D sequence).")
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"`{name}` has shape {array.shape}; pass one value per example (a 1-D sequence). "
            "For logits or probabilities, pass the class ids, e.g. `logits.argmax(-1)`."
        )
    return array


def _pair(first: ArrayLike, second: ArrayLike, names: tuple[str, str]) -> tuple[np.ndarray, ...]:
    a, b = _as_vector(first, names[0]), _as_vector(second, names[1])
    if len(a) != len(b):
        raise ValueError(
            f"`{names[0]}` has {len(a)} values and `{names[1]}` has {len(b)}; "
            "they must pair up one to one."
        )
    if len(a) == 0:
        raise ValueError(f"`{names[0]}` and `{names[1]}` are empty; there is nothing to score.")
    return a, b


def _as_float_pair(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = _pair(x, y, ("x", "y"))
    try:
        a, b = a.astype(np.float64), b.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Correlations need numbers; could not read the inputs as floats: {error}"
        ) from error
    for name, values in (("x", a), ("y", b)):
        if not np.all(np.isfinite(values)):
            index = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValueError(
                f"`{name}` holds a non-finite value ({values[index]}) at index {index}; "
                "drop or fix it before computing a correlation."
            )
    return a, b


def accuracy(labels: ArrayLike, predictions: ArrayLike) -> float:
    """Share of predictions equal to their label.

    Example:
    >>> accuracy([0, 1, 1, 0], [0, 1, 0, 0])
    0.75
    """
    labels, predictions = _pair(labels, predictions, ("labels", "predictions"))
    return float(np.mean(labels == predictions))


def f1_score(labels: ArrayLike, predictions: ArrayLike, positive_label: int | str = 1) -> float:
    """F1 of the positive class, as GLUE reports it for MRPC and QQP.

    `2 * tp / (2 * tp + fp + fn)` counting `positive_label` as positive and every other value
    as negative; 0.0 when there is no positive label and no positive prediction (scikit-learn's
    `f1_score(..., average="binary")` with its default `zero_division`).

    Example:
    >>> round(f1_score([1, 1, 0, 0], [1, 0, 1, 0]), 4)
    0.5
    """
    labels, predictions = _pair(labels, predictions, ("labels", "predictions"))
    true_positive = labels == positive_label
    predicted_positive = predictions == positive_label
    tp = int(np.sum(true_positive & predicted_positive))
    denominator = int(np.sum(true_positive)) + int(np.sum(predicted_positive))
    return 0.0 if denominator == 0 else float(2 * tp / denominator)


def matthews_corrcoef(labels: ArrayLike, predictions: ArrayLike) -> float:
    """Matthews correlation coefficient (CoLA), binary or multiclass, in [-1, 1].

    The multiclass form scikit-learn uses (Gorodkin's R_K); 0.0 when the labels or the
    predictions are all one class.

    Example:
    >>> round(matthews_corrcoef([1, 1, 0, 0], [1, 0, 0, 0]), 4)
    0.5774
    """
    labels, predictions = _pair(labels, predictions, ("labels", "predictions"))
    _, codes = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    codes = codes.reshape(-1)
    true_codes, pred_codes = codes[: len(labels)], codes[len(labels):]
    num_classes = int(codes.max()) + 1
    true_counts = np.bincount(true_codes, minlength=num_classes).astype(np.float64)
    pred_counts = np.bincount(pred_codes, minlength=num_classes).astype(np.float64)
    correct = float(np.sum(true_codes == pred_codes))
    total = float(len(labels))
    covariance = correct * total - float(true_counts @ pred_counts)
    true_variance = total**2 - float(true_counts @ true_counts)
    pred_variance = total**2 - float(pred_counts @ pred_counts)
    if true_variance == 0.0 or pred_variance == 0.0:
        return 0.0
    return float(covariance / np.sqrt(true_variance * pred_variance))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.all(a == a[0]) or np.all(b == b[0]):
        return 0.0  # A constant column has no correlation (scipy says NaN, scikit-learn 0.0).
    a, b = a - a.mean(), b - b.mean()
    norm_a, norm_b = np.linalg.norm(a), np.linalg.norm(b)
    return float(np.clip(np.dot(a / norm_a, b / norm_b), -1.0, 1.0))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks (`scipy.stats.rankdata`)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
    group = np.cumsum(starts) - 1
    first_rank = np.flatnonzero(starts)
    last_rank = np.append(first_rank[1:], len(values)) - 1
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = (first_rank[group] + last_rank[group]) / 2.0 + 1.0
    return ranks


def pearson_corrcoef(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation (STS-B), as `scipy.stats.pearsonr(x, y)[0]`; 0.0 if either is constant.

    Example:
    >>> pearson_corrcoef([1.0, 2.0, 3.0], [2.0, 4.0, 7.0])  # doctest: +ELLIPSIS
    0.99339...
    """
    return _pearson(*_as_float_pair(x, y))


def spearman_corrcoef(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation (STS-B), as `scipy.stats.spearmanr(x, y)[0]`.

    Pearson correlation of the ranks, ties sharing their average rank; 0.0 if either is
    constant.

    Example:
    >>> spearman_corrcoef([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    0.8
    """
    a, b = _as_float_pair(x, y)
    return _pearson(_average_ranks(a), _average_ranks(b))


_METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": accuracy,
    "f1": f1_score,
    "matthews_corrcoef": matthews_corrcoef,
    "pearson": pearson_corrcoef,
    "spearman": spearman_corrcoef,
}


def classification_metrics(
    labels: ArrayLike, predictions: ArrayLike, names: Sequence[str]
) -> dict[str, float]:
    """Several metrics at once, keyed by name, e.g. a GLUE task's reported set.

    Names come from `"accuracy"`, `"f1"` (positive class 1), `"matthews_corrcoef"`,
    `"pearson"` and `"spearman"`; predictions are class ids for the first three and scores for
    the correlations.

    Example:
    >>> classification_metrics([1, 0, 1, 1], [1, 0, 0, 1], ["accuracy", "f1"])
    {'accuracy': 0.75, 'f1': 0.8}
    """
    if isinstance(names, str):
        names = [names]
    unknown = [name for name in names if name not in _METRICS]
    if unknown:
        raise ValueError(
            f"Unknown metric name(s) {unknown}; choose from {sorted(_METRICS)}."
        )
    if not names:
        raise ValueError(f"No metric names given; choose from {sorted(_METRICS)}.")
    return {name: _METRICS[name](labels, predictions) for name in names}
