"""Datasets from local files: the shipped sample, text for language modelling, text pairs."""

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
from keras_llm.data.text_to_text import SST2_LABELS, read_text_pairs, sst2_as_text_to_text

__all__ = [
    "SAMPLE_DIR",
    "SST2_LABELS",
    "load_sample_sentiment",
    "pack_blocks",
    "random_spans_noise_mask",
    "read_labelled_tsv",
    "read_text_file",
    "read_text_pairs",
    "span_corruption",
    "span_corruption_dataset",
    "sst2_as_text_to_text",
    "tokenize_text",
    "unigram_cross_entropy",
]
