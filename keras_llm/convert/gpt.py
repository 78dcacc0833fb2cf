"""GPT-2 checkpoints from a local Hugging Face folder (`config.json` + weights)."""

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
    from keras_llm.models import Gpt

_REQUIRED_CONFIG_KEYS = ("vocab_size", "n_layer", "n_head", "n_embd")
# Causal-mask buffers that old HF versions saved with the weights.
_IGNORED = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")


def read_gpt_checkpoint(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """`(Gpt constructor arguments, weights without the "transformer." prefix)`."""
    if not os.path.isdir(path):
        raise CheckpointError(
            f"GPT-2 checkpoint folder not found: {path} (expected a folder with config.json "
            "and model.safetensors or pytorch_model.bin)."
        )
    config_path = os.path.join(path, "config.json")
    raw = read_json(config_path, _REQUIRED_CONFIG_KEYS)
    if raw.get("model_type", "gpt2") != "gpt2":
        raise CheckpointError(
            f"{config_path} describes a {raw['model_type']!r} model; only GPT-2 checkpoints "
            "load into keras_llm.models.Gpt."
        )
    for flag in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        if raw.get(flag):
            raise CheckpointError(f"{config_path} sets {flag}=true, which Gpt does not support.")
    config = dict(
        vocab_size=raw["vocab_size"],
        num_layers=raw["n_layer"],
        num_heads=raw["n_head"],
        hidden_size=raw["n_embd"],
        intermediate_size=raw.get("n_inner") or 4 * raw["n_embd"],
        max_sequence_length=raw.get("n_positions", 1024),
        dropout=raw.get("resid_pdrop", 0.1),
        attention_dropout=raw.get("attn_pdrop", 0.1),
        layer_norm_epsilon=raw.get("layer_norm_epsilon", 1e-5),
        activation=raw.get("activation_function", "gelu_new"),
        initializer_range=raw.get("initializer_range", 0.02),
    )
    weights = read_hf_weights(path)
    weights = {name.removeprefix("transformer."): value for name, value in weights.items()}
    return config, weights


def load_gpt_backbone(path: str, **overrides: Any) -> Gpt:
    """A `Gpt` with the weights of a local HF GPT-2 folder; keyword arguments override the
    config (e.g. `dtype`, `dropout`)."""
    from keras_llm.models import Gpt
    from keras_llm.models.backbone import override_config

    config, raw_weights = read_gpt_checkpoint(path)
    weights = WeightMap(raw_weights, path)
    gpt = Gpt(**override_config(config, overrides))
    gpt.build({"token_ids": (None, None)})

    embeddings = gpt.embeddings
    weights.assign(embeddings.token_embedding.embeddings, weights.take("wte.weight"), "wte.weight")
    weights.assign(embeddings.position_embedding.embeddings, weights.take("wpe.weight"),
                   "wpe.weight")
    for i, block in enumerate(gpt.decoder_blocks):
        prefix = f"h.{i}"
        weights.layer_norm(block.self_attention_norm, f"{prefix}.ln_1")
        # c_attn is already one fused [hidden, 3 * hidden] projection: q, k, v columns.
        weights.dense(block.self_attention.qkv_dense, f"{prefix}.attn.c_attn", transpose=False)
        weights.dense(block.self_attention.output_dense, f"{prefix}.attn.c_proj", transpose=False)
        weights.layer_norm(block.feed_forward_norm, f"{prefix}.ln_2")
        weights.dense(block.feed_forward.intermediate_dense, f"{prefix}.mlp.c_fc",
                      transpose=False)
        weights.dense(block.feed_forward.output_dense, f"{prefix}.mlp.c_proj", transpose=False)
    weights.layer_norm(gpt.final_norm, "ln_f")

    if "lm_head.weight" in weights:
        if not np.array_equal(weights.take("lm_head.weight"), weights.weights["wte.weight"]):
            raise CheckpointError(
                f"{path} has an lm_head.weight that differs from wte.weight; GptCausalLM ties "
                "the output projection to the token embedding, as GPT-2 does."
            )
    unused = weights.unused(lambda name: bool(_IGNORED.match(name)))
    if unused:
        shown = ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else "")
        raise CheckpointError(
            f"{len(unused)} tensors in {path} match no layer of the model: {shown}. The "
            "checkpoint is not a GPT-2 of this architecture."
        )
    return gpt
