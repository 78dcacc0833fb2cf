"""In-graph (TensorFlow) tokenizers and preprocessors."""

from keras_llm.tokenizers.bert_preprocessor import BertPreprocessor
from keras_llm.tokenizers.byte_pair_tokenizer import BytePairTokenizer
from keras_llm.tokenizers.byte_tokenizer import ByteTokenizer
from keras_llm.tokenizers.sentence_piece_tokenizer import (
    SentencePieceTokenizer,
    train_sentence_piece,
)
from keras_llm.tokenizers.word_piece_tokenizer import WordPieceTokenizer

__all__ = [
    "BertPreprocessor",
    "BytePairTokenizer",
    "ByteTokenizer",
    "SentencePieceTokenizer",
    "WordPieceTokenizer",
    "train_sentence_piece",
]
