"""SQuAD evaluation: exact match and token F1, as the official v1.1 and v2.0 scripts score them.

Answers are compared after the official normalization (lowercase, drop ASCII punctuation, drop
the articles "a", "an", "the", collapse whitespace); a question's score is the best over its
ground-truth answers. SQuAD v2.0 adds unanswerable questions, whose only correct answer is the
empty string, and an optional no-answer probability per question with a threshold.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation, drop articles (a/an/the), collapse whitespace.

    The order and the rules of the official SQuAD v1.1 and v2.0 scripts.

    Example:
    >>> normalize_answer("  The  Eiffel-Tower, in Paris! ")
    'eiffeltower in paris'
    """
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact_match(prediction: str, ground_truth: str) -> float:
    """1.0 if the two answers are equal after `normalize_answer`, else 0.0.

    Example:
    >>> squad_exact_match("the Eiffel Tower.", "Eiffel tower")
    1.0
    """
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def _token_f1(prediction: str, ground_truth: str, empty_answers_match: bool) -> float:
    predicted = normalize_answer(prediction).split()
    gold = normalize_answer(ground_truth).split()
    if empty_answers_match and (not predicted or not gold):
        return float(predicted == gold)
    same = sum((Counter(predicted) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, ground_truth: str) -> float:
    """Token-level F1 between the normalized answers (bag of words, counting repeats).

    SQuAD v2.0's rule for empty answers: if either side normalizes to nothing, the F1 is 1.0 when
    both do and 0.0 otherwise.

    Example:
    >>> round(squad_f1("the big red barn", "a red barn"), 4)
    0.8
    >>> squad_f1("", "the")  # Both normalize to "": a correct no-answer.
    1.0
    """
    return _token_f1(prediction, ground_truth, empty_answers_match=True)


def _questions(articles: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str], bool]]:
    """`(id, ground-truth texts, has the is_impossible field)` for every question, validated."""
    if isinstance(articles, Mapping):
        hint = " (the file's 'data' list)" if "data" in articles else ""
        raise ValueError(
            f"`articles` is a mapping; pass the list of articles{hint}, e.g. "
            "`evaluate_squad(json.load(f)['data'], predictions)`."
        )
    questions = []
    for a, article in enumerate(articles):
        if not isinstance(article, Mapping) or "paragraphs" not in article:
            raise ValueError(
                f"Article {a} has no 'paragraphs' list; `articles` must be the SQuAD JSON's "
                "'data' list (articles -> paragraphs -> qas)."
            )
        for p, paragraph in enumerate(article["paragraphs"]):
            if not isinstance(paragraph, Mapping) or "qas" not in paragraph:
                raise ValueError(
                    f"Paragraph {p} of article {a} has no 'qas' list; each paragraph needs "
                    "'context' and 'qas'."
                )
            for q, qa in enumerate(paragraph["qas"]):
                if not isinstance(qa, Mapping) or "id" not in qa or "answers" not in qa:
                    raise ValueError(
                        f"Question {q} of paragraph {p} of article {a} lacks 'id' or 'answers'; "
                        "each question needs both (an empty 'answers' list for SQuAD v2.0 "
                        "unanswerable questions)."
                    )
                try:
                    texts = [str(answer["text"]) for answer in qa["answers"]]
                except (KeyError, TypeError) as error:
                    raise ValueError(
                        f"Question {qa['id']!r} has an answer without a 'text' field; each "
                        "answer must be a mapping {'text': ..., 'answer_start': ...}."
                    ) from error
                questions.append((str(qa["id"]), texts, "is_impossible" in qa))
    if not questions:
        raise ValueError("`articles` holds no questions; there is nothing to score.")
    return questions


def _percent(scores: Mapping[str, float], ids: Sequence[str]) -> float:
    return 100.0 * sum(scores[i] for i in ids) / len(ids)


def _best_threshold(
    predictions: Mapping[str, str],
    scores: Mapping[str, float],
    probabilities: Mapping[str, float],
    has_answer: Mapping[str, bool],
    answered: set[str],
) -> tuple[float, float]:
    """The official v2.0 sweep: walk questions by rising no-answer probability, each step
    keeping the model's answer for one more question, and keep the best total."""
    score = float(sum(1 for i in answered if not has_answer[i]))  # Everything "no answer".
    best_score, best_threshold = score, 0.0
    for qid in sorted(probabilities, key=lambda k: probabilities[k]):
        if qid not in answered:
            continue
        if has_answer[qid]:
            score += scores[qid]
        elif predictions[qid]:
            score -= 1.0
        if score > best_score:
            best_score, best_threshold = score, float(probabilities[qid])
    return 100.0 * best_score / len(has_answer), best_threshold


def evaluate_squad(
    articles: Sequence[Mapping[str, Any]],
    predictions: Mapping[str, str],
    no_answer_probabilities: Mapping[str, float] | None = None,
    no_answer_threshold: float = 1.0,
) -> dict[str, float | int]:
    """Score predicted answers on a SQuAD v1.1 or v2.0 dataset, in percent (0-100).

    Args:
        articles: the dataset JSON's `"data"` list (articles -> paragraphs -> qas).
        predictions: question id -> predicted answer text; `""` predicts "no answer".
        no_answer_probabilities: optional question id -> probability that the question has
            no answer (the official v2.0 `na_prob` file). A question whose probability is above
            `no_answer_threshold` is scored as if "no answer" were predicted; the result then
            also holds the best threshold sweep, `best_exact`, `best_exact_thresh`, `best_f1`
            and `best_f1_thresh`.
        no_answer_threshold: see `no_answer_probabilities`.

    Returns:
        `exact_match`, `f1` (the best over each question's ground truths, averaged), `total`
        (every question in `articles`) and `missing` (questions absent from `predictions`;
        they score 0 and still count in `total`). With SQuAD v1.1 data the numbers equal
        the official v1.1 script's. With v2.0 data (a question with no answers or an
        `is_impossible` field) or when `no_answer_probabilities` is given, the v2.0 script's
        scoring applies and the result adds `exact` (an alias of `exact_match`), and for the
        answerable and the unanswerable questions, whichever exist, `HasAns_exact`,
        `HasAns_f1`, `HasAns_total`, `NoAns_exact`, `NoAns_f1`, `NoAns_total`. Unlike the
        official v2.0 script, which drops missing questions from its totals, a missing
        question counts as wrong; with every question predicted the numbers agree.

    Example:
    >>> data = [{"paragraphs": [{"context": "Paris is in France.", "qas": [
    ...     {"id": "q1", "question": "Where is Paris?",
    ...      "answers": [{"text": "France", "answer_start": 12}]},
    ...     {"id": "q2", "question": "Which city?",
    ...      "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]
    >>> evaluate_squad(data, {"q1": "in France", "q2": "Paris"})
    {'exact_match': 50.0, 'f1': 83.33333333333333, 'total': 2, 'missing': 0}
    """
    if not isinstance(predictions, Mapping):
        raise ValueError(
            f"`predictions` is a {type(predictions).__name__}; pass a mapping from question id "
            "to answer text (the official predictions JSON)."
        )
    questions = _questions(articles)
    for qid, _, _ in questions:
        if qid in predictions and not isinstance(predictions[qid], str):
            raise ValueError(
                f"The prediction for question {qid!r} is {predictions[qid]!r}, not a string; "
                "predict the answer text ('' for no answer)."
            )
    is_v2 = no_answer_probabilities is not None or any(
        not texts or impossible for _, texts, impossible in questions
    )
    answered = {qid for qid, _, _ in questions if qid in predictions}
    exact: dict[str, float] = {}
    f1: dict[str, float] = {}
    has_answer: dict[str, bool] = {}
    for qid, texts, _ in questions:
        has_answer[qid] = bool(texts)
        if qid not in answered:
            exact[qid] = f1[qid] = 0.0
            continue
        prediction = predictions[qid]
        if is_v2:
            # Ground truths that normalize to nothing do not count; none left means the only
            # correct answer is the empty one.
            golds = [text for text in texts if normalize_answer(text)] or [""]
        else:
            golds = texts
        exact[qid] = max(squad_exact_match(prediction, gold) for gold in golds)
        f1[qid] = max(_token_f1(prediction, gold, empty_answers_match=is_v2) for gold in golds)
    ids = list(has_answer)
    if not is_v2:
        return {
            "exact_match": _percent(exact, ids),
            "f1": _percent(f1, ids),
            "total": len(ids),
            "missing": len(ids) - len(answered),
        }

    raw_exact, raw_f1 = dict(exact), dict(f1)
    if no_answer_probabilities is not None:
        absent = [qid for qid in ids if qid in answered and qid not in no_answer_probabilities]
        if absent:
            raise ValueError(
                f"`no_answer_probabilities` has no entry for {len(absent)} predicted question(s), "
                f"e.g. {absent[:3]}; give a probability for every predicted question."
            )
        for qid in answered:
            if no_answer_probabilities[qid] > no_answer_threshold:
                exact[qid] = f1[qid] = float(not has_answer[qid])
    result: dict[str, float | int] = {
        "exact_match": _percent(exact, ids),
        "exact": _percent(exact, ids),
        "f1": _percent(f1, ids),
        "total": len(ids),
        "missing": len(ids) - len(answered),
    }
    for prefix, group in (
        ("HasAns", [qid for qid in ids if has_answer[qid]]),
        ("NoAns", [qid for qid in ids if not has_answer[qid]]),
    ):
        if group:
            result[f"{prefix}_exact"] = _percent(exact, group)
            result[f"{prefix}_f1"] = _percent(f1, group)
            result[f"{prefix}_total"] = len(group)
    if no_answer_probabilities is not None:
        for name, scores in (("exact", raw_exact), ("f1", raw_f1)):
            best, threshold = _best_threshold(
                predictions, scores, no_answer_probabilities, has_answer, answered
            )
            result[f"best_{name}"] = best
            result[f"best_{name}_thresh"] = threshold
    return result
