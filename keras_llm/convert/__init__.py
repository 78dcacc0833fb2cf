"""Checkpoint import from local files, no downloads: HF BERT, GPT-2 and T5; Google BERT."""

from keras_llm.convert.bert import load_bert_backbone, load_bert_task, read_bert_checkpoint
from keras_llm.convert.checkpoint_files import (
    CheckpointError,
    read_hf_weights,
    read_json,
    read_tf_checkpoint,
)
from keras_llm.convert.gpt import load_gpt_backbone, read_gpt_checkpoint
from keras_llm.convert.t5 import load_t5, read_t5_checkpoint

__all__ = [
    "CheckpointError",
    "load_bert_backbone",
    "load_bert_task",
    "load_gpt_backbone",
    "load_t5",
    "read_bert_checkpoint",
    "read_gpt_checkpoint",
    "read_t5_checkpoint",
    "read_hf_weights",
    "read_json",
    "read_tf_checkpoint",
]
