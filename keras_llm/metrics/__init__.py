"""Metrics, each checked against its official definition."""

from keras_llm.metrics.perplexity import Perplexity

__all__ = ["Perplexity"]
