from keras_llm.models.t5.t5 import T5
from keras_llm.models.t5.t5_seq2seq_lm import T5Seq2SeqLM, shift_right

__all__ = ["T5", "T5Seq2SeqLM", "shift_right"]
