"""Datasets from local files: the shipped sample, text for language modelling."""

from keras_llm.data.language_modeling import (
    pack_blocks,
    read_text_file,
    tokenize_text,
    unigram_cross_entropy,
)
from keras_llm.data.sample import SAMPLE_DIR, load_sample_sentiment, read_labelled_tsv
from keras_llm.data.span_corruption import (
    random_spans_noise_mask,
    span_corruption,
    span_corruption_dataset,
)

__all__ = [
    "SAMPLE_DIR",
    "load_sample_sentiment",
    "pack_blocks",
    "random_spans_noise_mask",
    "read_labelled_tsv",
    "read_text_file",
    "span_corruption",
    "span_corruption_dataset",
    "tokenize_text",
    "unigram_cross_entropy",
]
