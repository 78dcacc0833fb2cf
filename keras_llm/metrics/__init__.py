"""Metrics, each checked against its official definition."""

from keras_llm.metrics.perplexity import Perplexity
from keras_llm.metrics.text_generation import bleu, exact_match, rouge_l

__all__ = ["Perplexity", "bleu", "exact_match", "rouge_l"]
