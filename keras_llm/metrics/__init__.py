"""Metrics, each checked against its official definition."""

from keras_llm.metrics.classification import (
    accuracy,
    classification_metrics,
    f1_score,
    matthews_corrcoef,
    pearson_corrcoef,
    spearman_corrcoef,
)
from keras_llm.metrics.perplexity import Perplexity
from keras_llm.metrics.sequence_labeling import entity_scores, extract_entities
from keras_llm.metrics.squad import (
    evaluate_squad,
    normalize_answer,
    squad_exact_match,
    squad_f1,
)
from keras_llm.metrics.text_generation import bleu, exact_match, rouge_l

__all__ = [
    "Perplexity",
    "accuracy",
    "bleu",
    "classification_metrics",
    "entity_scores",
    "evaluate_squad",
    "exact_match",
    "extract_entities",
    "f1_score",
    "matthews_corrcoef",
    "normalize_answer",
    "pearson_corrcoef",
    "rouge_l",
    "spearman_corrcoef",
    "squad_exact_match",
    "squad_f1",
]
