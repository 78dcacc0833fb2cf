"""GPT-2: pre-norm causal Transformer decoder blocks over token and learned position embeddings,
with a final layer normalization (Radford et al., 2019)."""

from __future__ import annotations

import keras

from keras_llm.layers import (
    Embeddings,
    LayerNormalization,
    TransformerDecoderBlock,
    empty_key_value_cache,
    rematerialized_call,
)
from keras_llm.models.backbone import Backbone, Tensor, resolve_quantized_policies
from keras_llm.models.gpt.gpt_presets import GPT_PRESETS
from keras_llm.models.presets import register_presets

register_presets("Gpt", GPT_PRESETS)


def unpack_gpt_inputs(inputs) -> tuple:
    """`(token_ids, padding_mask)` from a dict or a bare `[batch, seq]` id tensor."""
    if not isinstance(inputs, dict):
        inputs = {"token_ids": inputs}
    if "token_ids" not in inputs:
        raise ValueError(
            f"GPT models take `token_ids` (and optionally `padding_mask`); received keys "
            f"{sorted(inputs)}."
        )
    unknown = set(inputs) - {"token_ids", "padding_mask"}
    if unknown:
        raise ValueError(f"Unexpected GPT input keys {sorted(unknown)}.")
    token_ids = inputs["token_ids"]
    if len(token_ids.shape) != 2:
        raise ValueError(
            f"`token_ids` must have shape [batch, seq]; received shape {token_ids.shape}."
        )
    padding_mask = inputs.get("padding_mask")
    if padding_mask is not None and len(padding_mask.shape) != 2:
        raise ValueError(
            f"`padding_mask` must have shape [batch, seq]; received {padding_mask.shape}."
        )
    return token_ids, padding_mask


@keras.saving.register_keras_serializable(package="keras_llm")
class Gpt(Backbone):
    """The GPT-2 decoder: returns hidden states `[batch, seq, hidden]`.

    Takes `token_ids` `[batch, seq]` (a dict with `token_ids` and an optional
    `padding_mask`, or the bare ids). Attention is causal; right padding needs
    no mask for the real tokens, which never see later positions.

    For cached decoding, `call_with_cache(token_ids, cache, cache_update_index)`
    runs a slice of the sequence against a preallocated key/value cache (see
    `initial_cache`) and returns `(hidden_states, cache)`.

    Args:
        vocab_size: number of token ids.
        num_layers: number of decoder blocks.
        num_heads: attention heads per block.
        hidden_size: width of the hidden states.
        intermediate_size: width of the feed-forward hidden layer.
        max_sequence_length: number of learned positions.
        dropout: dropout on embeddings, sublayer outputs and (unless
            `attention_dropout` is given) attention probabilities.
        attention_dropout: dropout on the attention probabilities; `None` uses
            `dropout`. With 0, training calls reach the backend's fused attention
            kernel (`keras.ops.dot_product_attention`, cuDNN flash attention on
            JAX) instead of materializing the probabilities to drop them.
        layer_norm_epsilon: epsilon of every layer normalization.
        activation: feed-forward activation (GPT-2: tanh-approximated GELU).
        initializer_range: standard deviation of the weight initializers.
        remat: recompute each decoder block's activations in the backward pass of a
            training call instead of keeping them (gradient checkpointing): the same
            gradients for several times less activation memory and about a third more
            compute; what makes long sequences fit.
        dtype: a dtype or policy for every layer, e.g. `"mixed_bfloat16"`.

    Example:
    >>> import numpy as np, keras_llm
    >>> gpt = keras_llm.models.Gpt.from_preset("gpt2_tiny")
    >>> tuple(gpt({"token_ids": np.array([[464, 3290, 318]])}).shape)
    (1, 3, 64)
    """

    preset_family = "Gpt"

    def __init__(
        self,
        vocab_size: int,
        num_layers: int,
        num_heads: int,
        hidden_size: int,
        intermediate_size: int,
        max_sequence_length: int = 1024,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        layer_norm_epsilon: float = 1e-5,
        activation: str = "gelu_approximate",
        initializer_range: float = 0.02,
        remat: bool = False,
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size={hidden_size} must be divisible by num_heads={num_heads}."
            )
        self.vocab_size = vocab_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.max_sequence_length = max_sequence_length
        self.dropout = dropout
        self.attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.activation = activation
        self.initializer_range = initializer_range
        self.head_size = hidden_size // num_heads
        self.remat = remat

        self.embeddings = Embeddings(
            vocab_size,
            hidden_size,
            max_sequence_length,
            type_vocab_size=0,
            normalize=False,
            dropout=dropout,
            initializer_range=initializer_range,
            dtype=self.dtype_policy,
            name="embeddings",
        )
        initializer = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.decoder_blocks = [
            TransformerDecoderBlock(
                num_heads,
                intermediate_size,
                activation=activation,
                dropout=dropout,
                attention_dropout=self.attention_dropout,
                layer_norm_epsilon=layer_norm_epsilon,
                normalize_first=True,
                kernel_initializer=initializer,
                dtype=self.dtype_policy,
                name=f"decoder_block_{i}",
            )
            for i in range(num_layers)
        ]
        self.final_norm = LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="final_norm"
        )

    @property
    def token_embedding(self) -> keras.layers.Embedding:
        """The token embedding layer (tied to the language-model head)."""
        return self.embeddings.token_embedding

    def build(self, input_shape=None):
        shape = (None, None)
        if isinstance(input_shape, dict) and input_shape.get("token_ids") is not None:
            shape = tuple(input_shape["token_ids"])
        elif isinstance(input_shape, (tuple, list)) and len(input_shape) == 2:
            shape = tuple(input_shape)
        # Sublayers already built (e.g. by a cached call) keep their weights.
        if not self.embeddings.built:
            self.embeddings.build(shape)
        for block in self.decoder_blocks:
            if not block.built:
                block.build(shape + (self.hidden_size,))
        if not self.final_norm.built:
            self.final_norm.build(shape + (self.hidden_size,))
        resolve_quantized_policies(self)
        self.built = True

    def call(self, inputs, training=None):
        token_ids, padding_mask = unpack_gpt_inputs(inputs)
        x = self.embeddings(token_ids, training=training)
        for block in self.decoder_blocks:
            if self.remat and training:
                x = rematerialized_call(block, x, padding_mask=padding_mask, training=training)
            else:
                x = block(x, padding_mask=padding_mask, training=training)
        return self.final_norm(x)

    def initial_cache(self, batch_size: int, max_length: int) -> list:
        """Zeroed caches: per layer `(keys, values)`, each `[batch, heads, length, head_size]`."""
        if max_length > self.max_sequence_length:
            raise ValueError(
                f"A cache of {max_length} positions exceeds max_sequence_length="
                f"{self.max_sequence_length}."
            )
        return [
            empty_key_value_cache(
                batch_size, self.num_heads, max_length, self.head_size, self.compute_dtype
            )
            for _ in range(self.num_layers)
        ]

    def call_with_cache(self, token_ids: Tensor, cache: list, cache_update_index: int | Tensor,
                        padding_mask: Tensor | None = None) -> tuple[Tensor, list]:
        """Runs `token_ids` `[batch, n]` at positions `cache_update_index ...`.

        Returns `(hidden_states [batch, n, hidden], updated cache)`. `padding_mask`,
        if given, covers the whole cache `[batch, max_length]`.
        """
        if not self.built:
            self.build({"token_ids": tuple(token_ids.shape)})
        x = self.embeddings(token_ids, start_index=cache_update_index)
        new_cache = []
        for block, block_cache in zip(self.decoder_blocks, cache, strict=True):
            x, block_cache = block(
                x,
                padding_mask=padding_mask,
                cache=block_cache,
                cache_update_index=cache_update_index,
            )
            new_cache.append(block_cache)
        return self.final_norm(x), new_cache

    def get_config(self):
        return {
            **self.base_config(),
            "vocab_size": self.vocab_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "max_sequence_length": self.max_sequence_length,
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "activation": self.activation,
            "initializer_range": self.initializer_range,
            "remat": self.remat,
        }

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> Gpt:
        """Loads a local Hugging Face GPT-2 folder (`config.json` + weights)."""
        from keras_llm.convert.gpt import load_gpt_backbone

        return load_gpt_backbone(path, **kwargs)
