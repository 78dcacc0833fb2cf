"""Backend-agnostic Transformer building blocks (`keras.ops` only)."""

from keras_llm.layers.attention import (
    MultiHeadAttention,
    empty_key_value_cache,
    merge_attention_masks,
)
from keras_llm.layers.dense import OutputMajorDense, clone_initializer, kernel_is_output_major
from keras_llm.layers.embeddings import Embeddings, check_token_ids, project_onto_embeddings
from keras_llm.layers.feed_forward import FeedForward, get_activation
from keras_llm.layers.layer_normalization import LayerNormalization
from keras_llm.layers.masked_lm_head import MaskedLMHead
from keras_llm.layers.relative_position_bias import (
    RelativePositionBias,
    relative_position_buckets,
)
from keras_llm.layers.remat import rematerialized_call
from keras_llm.layers.rms_normalization import RMSNormalization
from keras_llm.layers.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_llm.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_llm.layers.transformer_encoder_block import TransformerEncoderBlock

__all__ = [
    "Embeddings",
    "FeedForward",
    "LayerNormalization",
    "MaskedLMHead",
    "MultiHeadAttention",
    "OutputMajorDense",
    "RMSNormalization",
    "RelativePositionBias",
    "SinusoidalPositionEncoding",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
    "check_token_ids",
    "clone_initializer",
    "empty_key_value_cache",
    "get_activation",
    "kernel_is_output_major",
    "merge_attention_masks",
    "project_onto_embeddings",
    "relative_position_buckets",
    "rematerialized_call",
]
