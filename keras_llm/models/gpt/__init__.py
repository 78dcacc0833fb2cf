from keras_llm.models.gpt.gpt import Gpt
from keras_llm.models.gpt.gpt_causal_lm import GptCausalLM

__all__ = ["Gpt", "GptCausalLM"]
