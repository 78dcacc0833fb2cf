"""In-graph (TensorFlow) tokenizers and preprocessors."""

from keras_llm.tokenizers.bert_preprocessor import BertPreprocessor
from keras_llm.tokenizers.word_piece_tokenizer import WordPieceTokenizer

__all__ = ["BertPreprocessor", "WordPieceTokenizer"]
