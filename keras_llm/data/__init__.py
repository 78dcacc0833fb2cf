"""Datasets from local files: the shipped sample, GLUE, SQuAD, CoNLL-2003, pretraining corpora,
text for language modelling, text pairs. Each task's module holds its reader, its `tf.data`
builder and its error messages (`keras_llm.data.glue.make_dataset`, ...)."""

from keras_llm.data import conll, glue, pipeline, pretraining, squad
from keras_llm.data.conll import iob1_to_iob2, read_conll
from keras_llm.data.glue import get_task, read_glue_split
from keras_llm.data.language_modeling import (
    pack_blocks,
    read_text_file,
    tokenize_text,
    unigram_cross_entropy,
)
from keras_llm.data.pipeline import shuffle_epochs
from keras_llm.data.pretraining import build_vocabulary, read_documents
from keras_llm.data.sample import SAMPLE_DIR, load_sample_sentiment, read_labelled_tsv
from keras_llm.data.span_corruption import (
    random_spans_noise_mask,
    span_corruption,
    span_corruption_dataset,
)
from keras_llm.data.text_to_text import SST2_LABELS, read_text_pairs, sst2_as_text_to_text

__all__ = [
    "build_vocabulary",
    "conll",
    "get_task",
    "glue",
    "iob1_to_iob2",
    "pipeline",
    "pretraining",
    "read_conll",
    "read_documents",
    "read_glue_split",
    "shuffle_epochs",
    "squad",
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
