"""T5: a pre-norm encoder-decoder with RMS norm, no biases, unscaled attention logits and
learned relative position buckets shared by all blocks (Raffel et al., 2020)."""

from __future__ import annotations

import keras
from keras import ops

from keras_llm.layers import (
    RelativePositionBias,
    RMSNormalization,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
    empty_key_value_cache,
)
from keras_llm.layers.embeddings import check_token_ids
from keras_llm.models.backbone import Backbone, Tensor, resolve_quantized_policies
from keras_llm.models.presets import register_presets
from keras_llm.models.t5.t5_presets import T5_PRESETS

register_presets("T5", T5_PRESETS)

_INPUT_KEYS = ("encoder_token_ids", "encoder_padding_mask", "decoder_token_ids",
               "decoder_padding_mask")


def feed_forward_options(feed_forward: str) -> tuple[str, bool]:
    """`(activation, gated)` for T5's `"relu"`, `"gated-gelu"` or `"gated-<act>"` names."""
    gated = feed_forward.startswith("gated-")
    activation = feed_forward.removeprefix("gated-")
    # T5 v1.1's "gated-gelu" is the tanh-approximated GELU.
    return ("gelu_approximate" if activation == "gelu" and gated else activation), gated


@keras.saving.register_keras_serializable(package="keras_llm")
class T5(Backbone):
    """The T5 encoder-decoder: returns encoder and decoder hidden states.

    Input: a dict of `encoder_token_ids`, `encoder_padding_mask`,
    `decoder_token_ids`, `decoder_padding_mask` (`[batch, seq]` each; masks
    optional). Output: `{"encoder_sequence_output", "decoder_sequence_output"}`.
    The first block of each stack owns the relative position bias and every
    block adds it; the decoder's is causal (one-directional buckets). Cached
    decoding: `encode`, `cross_attention_cache` and `decode_with_cache`.

    Args:
        vocab_size: token ids (the embedding is shared by encoder and decoder).
        num_layers: encoder blocks (and decoder blocks unless `num_decoder_layers`).
        num_heads: attention heads.
        hidden_size: `d_model`.
        key_value_size: per-head width `d_kv` (T5 does not tie it to `hidden_size`).
        intermediate_size: feed-forward width `d_ff`.
        num_decoder_layers: decoder blocks, if different.
        feed_forward: `"relu"` (T5 v1.0) or `"gated-gelu"` (v1.1).
        relative_attention_num_buckets, relative_attention_max_distance: bucketing.
        dropout: dropout rate.
        layer_norm_epsilon: RMS norm epsilon.
        tie_embeddings: output projection = token embedding, with the decoder output
            scaled by `hidden_size ** -0.5` (v1.0); `False` gives a separate LM head
            (v1.1). Read by `T5Seq2SeqLM`.
        max_sequence_length: longest encoder input (and decoder cache) accepted.
        dtype: a dtype or policy, e.g. `"mixed_bfloat16"`.

    Example:
    >>> import numpy as np, keras_llm
    >>> t5 = keras_llm.models.T5.from_preset("t5_tiny")
    >>> out = t5({"encoder_token_ids": np.array([[37, 1]]), "decoder_token_ids": np.array([[0]])})
    >>> tuple(out["decoder_sequence_output"].shape)
    (1, 1, 64)
    """

    preset_family = "T5"

    def __init__(
        self,
        vocab_size: int,
        num_layers: int,
        num_heads: int,
        hidden_size: int,
        key_value_size: int,
        intermediate_size: int,
        num_decoder_layers: int | None = None,
        feed_forward: str = "relu",
        relative_attention_num_buckets: int = 32,
        relative_attention_max_distance: int = 128,
        dropout: float = 0.1,
        layer_norm_epsilon: float = 1e-6,
        tie_embeddings: bool = True,
        max_sequence_length: int = 512,
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)
        self.vocab_size = vocab_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_size = hidden_size
        self.key_value_size = key_value_size
        self.intermediate_size = intermediate_size
        self.num_decoder_layers = num_decoder_layers or num_layers
        self.feed_forward = feed_forward
        self.relative_attention_num_buckets = relative_attention_num_buckets
        self.relative_attention_max_distance = relative_attention_max_distance
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.tie_embeddings = tie_embeddings
        self.max_sequence_length = max_sequence_length
        activation, gated = feed_forward_options(feed_forward)

        self.token_embedding = keras.layers.Embedding(
            vocab_size,
            hidden_size,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        # T5's initialisation (Mesh TF): kernels ~ N(0, d_model^-1/2); see `build` for the
        # query, whose logits T5 does not scale by 1/sqrt(d_kv).
        block_options = dict(
            kernel_initializer=keras.initializers.RandomNormal(stddev=hidden_size**-0.5),
            activation=activation,
            dropout=dropout,
            layer_norm_epsilon=layer_norm_epsilon,
            normalize_first=True,
            head_size=key_value_size,
            use_bias=False,
            attention_scale=1.0,
            normalization="rms_norm",
            gated_feed_forward=gated,
            dtype=self.dtype_policy,
        )
        bias_options = dict(
            num_heads=num_heads,
            num_buckets=relative_attention_num_buckets,
            max_distance=relative_attention_max_distance,
            dtype=self.dtype_policy,
        )
        self.encoder_position_bias = RelativePositionBias(
            bidirectional=True, name="encoder_position_bias", **bias_options
        )
        self.decoder_position_bias = RelativePositionBias(
            bidirectional=False, name="decoder_position_bias", **bias_options
        )
        self.encoder_blocks = [
            TransformerEncoderBlock(num_heads, intermediate_size, name=f"encoder_block_{i}",
                                    **block_options)
            for i in range(num_layers)
        ]
        self.decoder_blocks = [
            TransformerDecoderBlock(num_heads, intermediate_size, cross_attention=True,
                                    name=f"decoder_block_{i}", **block_options)
            for i in range(self.num_decoder_layers)
        ]
        self.encoder_norm = RMSNormalization(layer_norm_epsilon, dtype=self.dtype_policy,
                                             name="encoder_norm")
        self.decoder_norm = RMSNormalization(layer_norm_epsilon, dtype=self.dtype_policy,
                                             name="decoder_norm")
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        hidden = (None, None, self.hidden_size)
        if not self.token_embedding.built:
            self.token_embedding.build((None, None))
        for layer in (self.encoder_position_bias, self.decoder_position_bias):
            if not layer.built:
                layer.build()
        for block in self.encoder_blocks:
            if not block.built:
                block.build(hidden)
        for block in self.decoder_blocks:
            if not block.built:
                block.build(hidden, hidden)
        for norm in (self.encoder_norm, self.decoder_norm):
            if not norm.built:
                norm.build(hidden)
        if not self.built:
            self._scale_query_initialization()
        resolve_quantized_policies(self)
        self.built = True

    def _scale_query_initialization(self) -> None:
        """Shrinks the initial query kernels by `d_kv^-1/2`, as T5 initialises them.

        T5 leaves attention logits unscaled, so a standard initialisation would
        saturate the softmax from the start and the decoder would learn to ignore
        the encoder. Loaded checkpoints overwrite these weights anyway. A layer built
        quantized (a quantized model being loaded) holds integer placeholders that the
        saved weights replace, so it is skipped.
        """
        inner = self.num_heads * self.key_value_size
        factor = self.key_value_size**-0.5
        attentions = [b.attention for b in self.encoder_blocks]
        attentions += [b.self_attention for b in self.decoder_blocks]
        for attention in attentions:
            if attention.qkv_dense.quantization_mode is not None:
                continue
            kernel = attention.qkv_dense.kernel
            scale = ops.concatenate([ops.full((inner,), factor), ops.ones((2 * inner,))])
            kernel.assign(ops.cast(kernel * scale[:, None], kernel.dtype))  # [out, in]
        for block in self.decoder_blocks:
            dense = block.cross_attention_layer.query_dense
            if dense.quantization_mode is None:
                dense.kernel.assign(ops.cast(dense.kernel * factor, dense.kernel.dtype))

    def _check_ids(self, token_ids, name: str) -> None:
        if len(token_ids.shape) != 2:
            raise ValueError(f"`{name}` must have shape [batch, seq]; got {token_ids.shape}.")
        length = token_ids.shape[1]
        if length == 0:
            raise ValueError(f"`{name}` is empty; every sequence needs at least one token.")
        if isinstance(length, int) and length > self.max_sequence_length:
            raise ValueError(
                f"`{name}` has {length} tokens; this T5 takes at most "
                f"{self.max_sequence_length} (max_sequence_length). Truncate the input."
            )
        check_token_ids(token_ids, self.vocab_size, name)

    def encode(self, token_ids: Tensor, padding_mask: Tensor | None = None,
               training: bool | None = None) -> Tensor:
        """Encoder hidden states `[batch, seq, hidden]`."""
        self._check_ids(token_ids, "encoder_token_ids")
        if padding_mask is None:
            padding_mask = ops.ones_like(token_ids)
        length = ops.shape(token_ids)[1]
        bias = self.encoder_position_bias(query_length=length, key_length=length)
        x = self.dropout_layer(self.token_embedding(token_ids), training=training)
        for block in self.encoder_blocks:
            x = block(x, padding_mask=padding_mask, attention_bias=bias, training=training)
        return self.dropout_layer(self.encoder_norm(x), training=training)

    def decode(self, token_ids: Tensor, encoder_output: Tensor,
               encoder_padding_mask: Tensor | None = None, padding_mask: Tensor | None = None,
               training: bool | None = None) -> Tensor:
        """Decoder hidden states `[batch, decoder_seq, hidden]` (teacher forcing)."""
        self._check_ids(token_ids, "decoder_token_ids")
        length = ops.shape(token_ids)[1]
        bias = self.decoder_position_bias(query_length=length, key_length=length)
        x = self.dropout_layer(self.token_embedding(token_ids), training=training)
        for block in self.decoder_blocks:
            x = block(
                x,
                encoder_output=encoder_output,
                padding_mask=padding_mask,
                encoder_padding_mask=encoder_padding_mask,
                attention_bias=bias,
                training=training,
            )
        return self.dropout_layer(self.decoder_norm(x), training=training)

    def call(self, inputs, training=None):
        if not isinstance(inputs, dict) or "encoder_token_ids" not in inputs:
            raise ValueError(f"T5 takes a dict with the keys {_INPUT_KEYS}.")
        unknown = set(inputs) - set(_INPUT_KEYS)
        if unknown:
            raise ValueError(f"Unexpected T5 input keys {sorted(unknown)}; expected {_INPUT_KEYS}.")
        if "decoder_token_ids" not in inputs:
            raise ValueError("T5 needs `decoder_token_ids` (the targets shifted right).")
        encoder_mask = inputs.get("encoder_padding_mask")
        encoder_output = self.encode(inputs["encoder_token_ids"], encoder_mask, training=training)
        decoder_output = self.decode(
            inputs["decoder_token_ids"],
            encoder_output,
            encoder_padding_mask=encoder_mask,
            padding_mask=inputs.get("decoder_padding_mask"),
            training=training,
        )
        return {"encoder_sequence_output": encoder_output,
                "decoder_sequence_output": decoder_output}

    def cross_attention_cache(self, encoder_output: Tensor) -> list:
        """Per decoder block, the encoder's `(keys, values)`, each `[batch, heads, seq, d_kv]`."""
        return [
            block.cross_attention_layer.compute_key_value_cache(encoder_output)
            for block in self.decoder_blocks
        ]

    def initial_cache(self, batch_size: int, max_length: int) -> list:
        """Zeroed self-attention caches, per block a `(keys, values)` pair of
        `[batch, heads, max_length, d_kv]`."""
        return [
            empty_key_value_cache(
                batch_size, self.num_heads, max_length, self.key_value_size, self.compute_dtype
            )
            for _ in range(self.num_decoder_layers)
        ]

    def decode_with_cache(self, token_ids: Tensor, self_cache: list, cross_cache: list,
                          encoder_padding_mask: Tensor | None,
                          cache_update_index: int | Tensor) -> tuple[Tensor, list]:
        """Decodes `token_ids` `[batch, n]` at positions `cache_update_index ...`.

        Returns `(hidden_states [batch, n, hidden], updated self-attention caches)`.
        """
        key_length = ops.shape(self_cache[0][0])[2]
        bias = self.decoder_position_bias(
            query_length=ops.shape(token_ids)[1], key_length=key_length,
            query_offset=cache_update_index,
        )
        x = self.token_embedding(token_ids)
        new_cache = []
        for block, cache, cross in zip(self.decoder_blocks, self_cache, cross_cache, strict=True):
            x, cache = block(
                x,
                encoder_padding_mask=encoder_padding_mask,
                attention_bias=bias,
                cache=cache,
                cache_update_index=cache_update_index,
                cross_attention_cache=cross,
            )
            new_cache.append(cache)
        return self.decoder_norm(x), new_cache

    def get_config(self):
        return {
            **self.base_config(),
            "vocab_size": self.vocab_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_size": self.hidden_size,
            "key_value_size": self.key_value_size,
            "intermediate_size": self.intermediate_size,
            "num_decoder_layers": self.num_decoder_layers,
            "feed_forward": self.feed_forward,
            "relative_attention_num_buckets": self.relative_attention_num_buckets,
            "relative_attention_max_distance": self.relative_attention_max_distance,
            "dropout": self.dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "tie_embeddings": self.tie_embeddings,
            "max_sequence_length": self.max_sequence_length,
        }

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> T5:
        """Loads a local Hugging Face T5 folder (`config.json` + weights)."""
        from keras_llm.convert.t5 import load_t5

        return load_t5(path, **kwargs)[0]
