"""The models keras-llm is measured against, built with the architecture of a keras-llm preset.

Every benchmark reads the shape from a keras-llm backbone's config (`model_shape`) and builds
keras-hub's backbone (`keras_hub_backbone`) and Hugging Face's config (`huggingface_config`) of
that same shape, so that each library does the same work. Training and decoding use the same
builders; the scripts add the heads (a classifier, a causal LM, a seq2seq LM).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from benchmarks.common import BenchmarkError

MODELS = ("bert", "gpt", "t5")
GENERATIVE_MODELS = ("gpt", "t5")
# keras-llm's backbone class of each model, and the preset a benchmark uses when not told.
FAMILIES = {"bert": "Bert", "gpt": "Gpt", "t5": "T5"}
DEFAULT_SIZES = {"bert": "bert_base", "gpt": "gpt2_small", "t5": "t5_small"}


def model_shape(backbone) -> SimpleNamespace:
    """The architecture of a keras-llm backbone: its config without name, dtype or trainable."""
    config = backbone.get_config()
    return SimpleNamespace(
        **{k: v for k, v in config.items() if k not in ("name", "dtype", "trainable")}
    )


def keras_hub_backbone(model: str, shape: SimpleNamespace, dropout: float, dtype: Any):
    """keras-hub's `BertBackbone`, `GPT2Backbone` or `T5Backbone` of `shape`.

    T5 is T5 v1.0 (ReLU feed-forward, tied embeddings): keras-hub's `T5Backbone` has no
    separate decoder depth, so a preset with one (or an untied head) raises `BenchmarkError`.
    """
    import keras_hub

    common = dict(vocabulary_size=shape.vocab_size, num_layers=shape.num_layers,
                  num_heads=shape.num_heads, hidden_dim=shape.hidden_size,
                  intermediate_dim=shape.intermediate_size, dropout=dropout, dtype=dtype)
    if model == "bert":
        return keras_hub.models.BertBackbone(
            max_sequence_length=shape.max_sequence_length, num_segments=shape.type_vocab_size,
            **common)
    if model == "gpt":
        return keras_hub.models.GPT2Backbone(
            max_sequence_length=shape.max_sequence_length, **common)
    if model != "t5":
        raise ValueError(f"model must be one of {MODELS}; got {model!r}")
    if shape.num_decoder_layers != shape.num_layers or not shape.tie_embeddings:
        raise BenchmarkError(
            "keras-hub's T5Backbone has as many decoder as encoder layers and a tied head; "
            f"this preset has {shape.num_decoder_layers} decoder and {shape.num_layers} encoder "
            f"layers and tie_embeddings={shape.tie_embeddings}. Use a T5 v1.0 preset (t5_tiny, "
            "t5_small, ...) or leave keras_hub out of --libraries.")
    return keras_hub.models.T5Backbone(
        key_value_dim=shape.key_value_size, activation="relu", use_gated_activation=False,
        layer_norm_epsilon=shape.layer_norm_epsilon, tie_embedding_weights=True, **common)


def huggingface_config(model: str, shape: SimpleNamespace, dropout: float,
                       attention_dropout: float | None = None, **overrides: Any):
    """The `transformers` config of `shape` (SDPA attention); `overrides` go to the config."""
    import transformers

    attention_dropout = dropout if attention_dropout is None else attention_dropout
    if model == "bert":
        return transformers.BertConfig(
            vocab_size=shape.vocab_size, hidden_size=shape.hidden_size,
            num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
            intermediate_size=shape.intermediate_size, hidden_act="gelu",
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=attention_dropout,
            max_position_embeddings=shape.max_sequence_length,
            type_vocab_size=shape.type_vocab_size, layer_norm_eps=shape.layer_norm_epsilon,
            attn_implementation="sdpa", **overrides)
    if model == "gpt":
        return transformers.GPT2Config(
            vocab_size=shape.vocab_size, n_positions=shape.max_sequence_length,
            n_embd=shape.hidden_size, n_layer=shape.num_layers, n_head=shape.num_heads,
            n_inner=shape.intermediate_size, activation_function="gelu_new",
            layer_norm_epsilon=shape.layer_norm_epsilon, resid_pdrop=dropout,
            embd_pdrop=dropout, attn_pdrop=attention_dropout, attn_implementation="sdpa",
            **overrides)
    if model != "t5":
        raise ValueError(f"model must be one of {MODELS}; got {model!r}")
    return transformers.T5Config(
        vocab_size=shape.vocab_size, d_model=shape.hidden_size, d_kv=shape.key_value_size,
        d_ff=shape.intermediate_size, num_layers=shape.num_layers,
        num_decoder_layers=shape.num_decoder_layers, num_heads=shape.num_heads,
        relative_attention_num_buckets=shape.relative_attention_num_buckets,
        relative_attention_max_distance=shape.relative_attention_max_distance,
        dropout_rate=dropout, layer_norm_epsilon=shape.layer_norm_epsilon,
        feed_forward_proj=shape.feed_forward, tie_word_embeddings=shape.tie_embeddings,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
        attn_implementation="sdpa", **overrides)
