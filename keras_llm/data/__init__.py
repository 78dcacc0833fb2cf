"""Datasets from local files: the shipped sample, text for language modelling."""

from keras_llm.data.language_modeling import (
    pack_blocks,
    read_text_file,
    tokenize_text,
    unigram_cross_entropy,
)
from keras_llm.data.sample import SAMPLE_DIR, load_sample_sentiment, read_labelled_tsv

__all__ = [
    "SAMPLE_DIR",
    "load_sample_sentiment",
    "pack_blocks",
    "read_labelled_tsv",
    "read_text_file",
    "tokenize_text",
    "unigram_cross_entropy",
]
