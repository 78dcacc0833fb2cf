"""Datasets from local files: the shipped sample and (later) GLUE, SQuAD and CoNLL readers."""

from keras_llm.data.sample import SAMPLE_DIR, load_sample_sentiment

__all__ = ["SAMPLE_DIR", "load_sample_sentiment"]
