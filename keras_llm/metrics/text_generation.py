"""Corpus metrics for generated text: exact match, ROUGE-L and BLEU.

ROUGE-L and BLEU come from the maintained reference packages (`rouge-score`,
`sacrebleu`), imported when first used.
"""

from __future__ import annotations

from collections.abc import Sequence


def _check(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions for {len(references)} references; they must pair up."
        )
    if not references:
        raise ValueError("No examples to score.")


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Share of predictions equal to their reference after stripping outer whitespace.

    Example:
    >>> exact_match(["positive ", "negative"], ["positive", "positive"])
    0.5
    """
    _check(predictions, references)
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references, strict=True)) / len(
        references
    )


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (`rouge-score`, with stemming), in [0, 1].

    Example:
    >>> round(rouge_l(["the cats sat on the mat"], ["the cat sat on a mat"]), 4)
    0.8333
    """
    _check(predictions, references)
    try:
        from rouge_score import rouge_scorer
    except ImportError as error:
        raise ImportError("ROUGE-L needs `pip install rouge-score`.") from error
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(r, p)["rougeL"].fmeasure
              for p, r in zip(predictions, references, strict=True)]
    return sum(scores) / len(scores)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (`sacrebleu`, its default 13a tokenization), in [0, 100].

    Example:
    >>> round(bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 2)
    100.0
    >>> round(bleu(["the cat sat on a mat"], ["the cat sat on the mat"]), 2)
    53.73
    """
    _check(predictions, references)
    try:
        import sacrebleu
    except ImportError as error:
        raise ImportError("BLEU needs `pip install sacrebleu`.") from error
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)
