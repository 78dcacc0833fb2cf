"""T5 checkpoints (v1.0 and v1.1) from a local Hugging Face folder."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_llm.convert.checkpoint_files import (
    CheckpointError,
    WeightMap,
    read_hf_weights,
    read_json,
)

if TYPE_CHECKING:
    from keras_llm.models import T5, T5Seq2SeqLM
    from keras_llm.tokenizers.string_tokenizer import StringTokenizer

_REQUIRED_CONFIG_KEYS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads")
# Copies of the shared embedding that some versions save per stack.
_IGNORED = re.compile(r"^(encoder|decoder)\.embed_tokens\.weight$")


def read_t5_checkpoint(path: str) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """`(T5 arguments, T5Seq2SeqLM arguments, weights)` of a local HF T5 folder."""
    if not os.path.isdir(path):
        raise CheckpointError(
            f"T5 checkpoint folder not found: {path} (expected config.json and "
            "model.safetensors or pytorch_model.bin)."
        )
    config_path = os.path.join(path, "config.json")
    raw = read_json(config_path, _REQUIRED_CONFIG_KEYS)
    if raw.get("model_type", "t5") != "t5":
        raise CheckpointError(
            f"{config_path} describes a {raw['model_type']!r} model; only T5 checkpoints load "
            "into keras_llm.models.T5."
        )
    feed_forward = raw.get("feed_forward_proj", "relu")
    if raw.get("is_gated_act") and not feed_forward.startswith("gated-"):
        feed_forward = "gated-" + feed_forward
    # transformers 5 always ties lm_head to the embedding and records the v1.0 output
    # scaling as `scale_decoder_outputs`; earlier versions used `tie_word_embeddings`.
    tied = raw.get("scale_decoder_outputs", raw.get("tie_word_embeddings", True))
    config = dict(
        vocab_size=raw["vocab_size"],
        num_layers=raw["num_layers"],
        num_decoder_layers=raw.get("num_decoder_layers") or raw["num_layers"],
        num_heads=raw["num_heads"],
        hidden_size=raw["d_model"],
        key_value_size=raw["d_kv"],
        intermediate_size=raw["d_ff"],
        feed_forward=feed_forward,
        relative_attention_num_buckets=raw.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=raw.get("relative_attention_max_distance", 128),
        dropout=raw.get("dropout_rate", 0.1),
        layer_norm_epsilon=raw.get("layer_norm_epsilon", 1e-6),
        tie_embeddings=bool(tied),
    )
    task = dict(
        decoder_start_token_id=raw.get("decoder_start_token_id", 0) or 0,
        end_token_id=raw.get("eos_token_id", 1) if raw.get("eos_token_id") is not None else 1,
        pad_token_id=raw.get("pad_token_id", 0) or 0,
    )
    return config, task, read_hf_weights(path)


def _attention(weights: WeightMap, attention, prefix: str, cross: bool) -> None:
    parts = [weights.take(f"{prefix}.{p}.weight").T for p in ("q", "k", "v")]
    if cross:
        weights.kernel(attention.query_dense, parts[0], f"{prefix}.q.weight")
        weights.kernel(attention.key_value_dense, np.concatenate(parts[1:], axis=1),
                       f"{prefix}.[k,v].weight")
    else:
        weights.kernel(attention.qkv_dense, np.concatenate(parts, axis=1),
                       f"{prefix}.[q,k,v].weight")
    weights.dense(attention.output_dense, f"{prefix}.o")


def _feed_forward(weights: WeightMap, ffn, prefix: str) -> None:
    if ffn.gated:
        weights.dense(ffn.intermediate_dense, f"{prefix}.wi_0")
        weights.dense(ffn.gate_dense, f"{prefix}.wi_1")
    else:
        weights.dense(ffn.intermediate_dense, f"{prefix}.wi")
    weights.dense(ffn.output_dense, f"{prefix}.wo")


def _norm(weights: WeightMap, norm, name: str) -> None:
    weights.assign(norm.scale, weights.take(f"{name}.weight"), f"{name}.weight")


def load_t5(path: str, with_lm_head: bool = False, tokenizer: StringTokenizer | None = None,
            **overrides: Any) -> tuple[T5, T5Seq2SeqLM | None]:
    """`(T5, T5Seq2SeqLM or None)` with the weights of a local HF T5 folder."""
    from keras_llm.models import T5, T5Seq2SeqLM

    config, task_config, raw_weights = read_t5_checkpoint(path)
    weights = WeightMap(raw_weights, path)
    t5 = T5(**{**config, **overrides})
    t5.build()
    weights.assign(t5.token_embedding.embeddings, weights.take("shared.weight"), "shared.weight")
    for stack, bias in (("encoder", t5.encoder_position_bias),
                        ("decoder", t5.decoder_position_bias)):
        name = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        weights.assign(bias.embeddings, weights.take(name), name)
    for i, block in enumerate(t5.encoder_blocks):
        prefix = f"encoder.block.{i}.layer"
        _attention(weights, block.attention, f"{prefix}.0.SelfAttention", cross=False)
        _norm(weights, block.attention_norm, f"{prefix}.0.layer_norm")
        _feed_forward(weights, block.feed_forward, f"{prefix}.1.DenseReluDense")
        _norm(weights, block.feed_forward_norm, f"{prefix}.1.layer_norm")
    for i, block in enumerate(t5.decoder_blocks):
        prefix = f"decoder.block.{i}.layer"
        _attention(weights, block.self_attention, f"{prefix}.0.SelfAttention", cross=False)
        _norm(weights, block.self_attention_norm, f"{prefix}.0.layer_norm")
        _attention(weights, block.cross_attention_layer, f"{prefix}.1.EncDecAttention",
                   cross=True)
        _norm(weights, block.cross_attention_norm, f"{prefix}.1.layer_norm")
        _feed_forward(weights, block.feed_forward, f"{prefix}.2.DenseReluDense")
        _norm(weights, block.feed_forward_norm, f"{prefix}.2.layer_norm")
    _norm(weights, t5.encoder_norm, "encoder.final_layer_norm")
    _norm(weights, t5.decoder_norm, "decoder.final_layer_norm")

    model = None
    if with_lm_head:
        model = T5Seq2SeqLM(t5, tokenizer=tokenizer, **task_config)
        model.build()
        if model.lm_head is not None:
            # transformers 5 saves no lm_head when it is tied to `shared`.
            name = "lm_head.weight" if "lm_head.weight" in weights else "shared.weight"
            weights.assign(model.lm_head.kernel, weights.take(name).T, name)
    elif "lm_head.weight" in weights:
        weights.take("lm_head.weight")  # A backbone-only load skips the head.

    ignore = (lambda n: bool(_IGNORED.match(n)) or n == "lm_head.weight") if (
        model is None or model.lm_head is None) else (lambda n: bool(_IGNORED.match(n)))
    unused = weights.unused(ignore)
    if unused:
        shown = ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else "")
        raise CheckpointError(
            f"{len(unused)} tensors in {path} match no layer of the model: {shown}. The "
            "checkpoint is not a T5 of this architecture."
        )
    return t5, model
