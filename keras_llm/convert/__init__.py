"""Checkpoint import from local files (no downloads): Hugging Face and Google BERT."""

from keras_llm.convert.bert import load_bert_backbone, load_bert_task, read_bert_checkpoint
from keras_llm.convert.checkpoint_files import (
    CheckpointError,
    read_hf_weights,
    read_json,
    read_tf_checkpoint,
)

__all__ = [
    "CheckpointError",
    "load_bert_backbone",
    "load_bert_task",
    "read_bert_checkpoint",
    "read_hf_weights",
    "read_json",
    "read_tf_checkpoint",
]
