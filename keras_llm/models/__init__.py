"""Models: backbones with size presets, and task models that wrap them."""

from keras_llm.models.bert import (
    Bert,
    BertClassifier,
    BertContrastive,
    BertPretrainer,
    BertQuestionAnswerer,
    BertTokenClassifier,
)
from keras_llm.models.gpt import Gpt, GptCausalLM
from keras_llm.models.presets import list_presets
from keras_llm.models.t5 import T5, T5Seq2SeqLM
from keras_llm.models.task import Task

__all__ = [
    "Bert",
    "BertClassifier",
    "BertContrastive",
    "BertPretrainer",
    "BertQuestionAnswerer",
    "BertTokenClassifier",
    "Gpt",
    "GptCausalLM",
    "T5",
    "T5Seq2SeqLM",
    "Task",
    "list_presets",
]
