"""Multi-head scaled dot-product attention with a fused QKV projection and a KV cache."""

from __future__ import annotations

import keras
from keras import ops

from keras_llm.layers.dense import OutputMajorDense, clone_initializer


def merge_attention_masks(
    batch_size,
    query_length,
    key_length,
    padding_mask=None,
    attention_mask=None,
    use_causal_mask: bool = False,
    query_offset=0,
):
    """Combines a padding mask, a full attention mask and a causal mask.

    Args:
        padding_mask: `[batch, key_length]`, true (or 1) where a key is a real token.
        attention_mask: `[batch, query_length, key_length]`, true where a query may
            attend to a key.
        use_causal_mask: whether query `i` may only see keys `<= i + query_offset`.
        query_offset: position of the first query among the keys (the cache index
            when decoding with a key/value cache).

    Returns:
        A boolean `[batch, query_length, key_length]` tensor, or `None` when
        nothing is masked.

    Raises:
        ValueError: for a mask of the wrong rank or a static shape that does not
            match the query and key lengths.

    Example:
    >>> import numpy as np
    >>> mask = merge_attention_masks(1, 3, 3, padding_mask=np.array([[1, 1, 0]]),
    ...                              use_causal_mask=True)
    >>> np.asarray(mask).astype(int).tolist()
    [[[1, 0, 0], [1, 1, 0], [1, 1, 0]]]
    """
    mask = None
    if padding_mask is not None:
        if len(padding_mask.shape) != 2:
            raise ValueError(
                "`padding_mask` must have shape [batch, key_length]; received rank "
                f"{len(padding_mask.shape)} with shape {padding_mask.shape}. Pass one "
                "row of 1/0 (or True/False) per sequence."
            )
        _check_static_dim(padding_mask.shape[1], key_length, "padding_mask", "key length")
        mask = ops.cast(padding_mask, "bool")[:, None, :]
    if attention_mask is not None:
        if len(attention_mask.shape) != 3:
            raise ValueError(
                "`attention_mask` must have shape [batch, query_length, key_length]; "
                f"received rank {len(attention_mask.shape)} with shape "
                f"{attention_mask.shape}."
            )
        _check_static_dim(attention_mask.shape[1], query_length, "attention_mask", "query length")
        _check_static_dim(attention_mask.shape[2], key_length, "attention_mask", "key length")
        attention_mask = ops.cast(attention_mask, "bool")
        mask = attention_mask if mask is None else ops.logical_and(mask, attention_mask)
    if use_causal_mask:
        query_positions = ops.arange(query_length) + query_offset
        key_positions = ops.arange(key_length)
        causal = ops.expand_dims(query_positions, 1) >= ops.expand_dims(key_positions, 0)
        causal = causal[None, :, :]
        mask = causal if mask is None else ops.logical_and(mask, causal)
    if mask is not None:
        mask = ops.broadcast_to(mask, (batch_size, query_length, key_length))
    return mask


def empty_key_value_cache(batch_size, num_heads: int, max_length: int, head_size: int,
                          dtype) -> tuple:
    """A zeroed `(keys, values)` cache for `MultiHeadAttention`, each
    `[batch, heads, max_length, head_size]`.

    Example:
    >>> keys, values = empty_key_value_cache(2, 4, 16, 8, "float32")
    >>> tuple(keys.shape)
    (2, 4, 16, 8)
    """
    shape = (batch_size, num_heads, max_length, head_size)
    return ops.zeros(shape, dtype), ops.zeros(shape, dtype)


def _check_static_dim(actual, expected, name: str, what: str) -> None:
    if isinstance(actual, int) and isinstance(expected, int) and actual != expected:
        raise ValueError(
            f"`{name}` does not match the inputs: its {what} is {actual} but the "
            f"inputs have {expected}."
        )


@keras.saving.register_keras_serializable(package="keras_llm")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention: `softmax(Q K^T / sqrt(d_k) + bias) V` over `num_heads` heads.

    Self-attention projects the input once into fused query, key and value
    (one matmul with a `[3 * heads * head_size, hidden]` kernel instead of three; every
    projection's kernel is `[out, in]`, see `OutputMajorDense`); cross-attention
    projects the query from the decoder and a fused key/value from the encoder.
    With no attention dropout in play and no probabilities asked for, the layer
    calls `keras.ops.dot_product_attention`, which dispatches to the backend's
    fused kernel (cuDNN flash attention on JAX/GPU), with a causal mask passed as
    the kernel's `is_causal` flag rather than a mask tensor; otherwise it computes
    the softmax explicitly. The softmax always runs in float32.

    For decoding, the key/value cache is a `(keys, values)` pair, each
    `[batch, heads, max_length, head_size]`: in that layout, and as two buffers
    rather than one stacked tensor, a one-token step reads the cache straight into
    its two matmuls, where a `[batch, length, heads, head_size]` layout makes XLA
    copy (transpose) every layer's whole cache at every step (benchmarks/NOTES.md).

    Args:
        num_heads: number of attention heads.
        head_size: size of each head's query/key/value; defaults to
            `hidden_size // num_heads`.
        cross_attention: project keys and values from a second input.
        use_bias: whether the projections have biases (BERT/GPT do, T5 does not).
        scale: multiplier of the logits; `None` means `1 / sqrt(head_size)`
            (T5 uses `1.0`).
        dropout: dropout rate on the attention probabilities.
        kernel_initializer: initializer of the projection kernels.

    Example:
    >>> import numpy as np
    >>> attention = MultiHeadAttention(num_heads=2)
    >>> x = np.random.rand(2, 5, 8).astype("float32")
    >>> mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    >>> tuple(attention(x, padding_mask=mask).shape)
    (2, 5, 8)
    """

    def __init__(
        self,
        num_heads: int,
        head_size: int | None = None,
        cross_attention: bool = False,
        use_bias: bool = True,
        scale: float | None = None,
        dropout: float = 0.0,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_size = head_size
        self.cross_attention = cross_attention
        self.use_bias = use_bias
        self.scale = scale
        self.dropout = dropout
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = False

    def build(self, query_shape, key_value_shape=None):
        hidden_size = query_shape[-1]
        if self.head_size is None:
            if hidden_size % self.num_heads:
                raise ValueError(
                    f"hidden size {hidden_size} is not divisible by num_heads="
                    f"{self.num_heads}; pass `head_size` explicitly."
                )
            self.head_size = hidden_size // self.num_heads
        inner_size = self.num_heads * self.head_size
        def dense() -> dict:  # Each sublayer draws its own initial kernel.
            return dict(
                use_bias=self.use_bias,
                kernel_initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
            )

        if self.cross_attention:
            self.query_dense = OutputMajorDense(inner_size, name="query", **dense())
            self.query_dense.build(query_shape)
            self.key_value_dense = OutputMajorDense(2 * inner_size, name="key_value", **dense())
            self.key_value_dense.build(key_value_shape or query_shape)
        else:
            self.qkv_dense = OutputMajorDense(3 * inner_size, name="qkv", **dense())
            self.qkv_dense.build(query_shape)
        self.output_dense = OutputMajorDense(hidden_size, name="output", **dense())
        self.output_dense.build(tuple(query_shape[:-1]) + (inner_size,))
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.built = True

    def _split_heads(self, x, parts: int):
        # [batch, seq, parts * heads * head_size] -> `parts` tensors [batch, seq, heads, head_size]
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, parts, self.num_heads, self.head_size))
        # Not `x[:, :, i]`: without XLA, TF's gradient of each strided slice is a zero-filled
        # tensor of the full fused size; unstack's gradient is one stack (benchmarks/NOTES.md).
        return ops.unstack(x, num=parts, axis=2)

    def call(
        self,
        query,
        key_value=None,
        padding_mask=None,
        attention_mask=None,
        use_causal_mask: bool = False,
        attention_bias=None,
        cache=None,
        cache_update_index=None,
        return_attention_scores: bool = False,
        training=None,
    ):
        """Attends from `query` to itself (or to `key_value` with cross-attention).

        Args:
            query: `[batch, query_length, hidden]`.
            key_value: `[batch, key_length, hidden]` for cross-attention.
            padding_mask: `[batch, key_length]`, true for real tokens.
            attention_mask: `[batch, query_length, key_length]`, true where allowed.
            use_causal_mask: mask future keys (offset by `cache_update_index`).
            attention_bias: additive logits bias broadcastable to
                `[batch, heads, query_length, key_length]` (T5's relative position bias).
            cache: `(keys, values)`, each `[batch, heads, max_length, head_size]`, of
                earlier steps. The new keys/values are written at
                `cache_update_index` and the query attends over the whole cache,
                so `padding_mask` must then cover `max_length` keys. For
                cross-attention, a cache holds the precomputed encoder keys/values
                and is used as is.
            cache_update_index: where the new keys/values go in `cache`.
            return_attention_scores: also return the `[batch, heads, query, key]`
                attention probabilities.

        Returns:
            The attended output `[batch, query_length, hidden]`; then the updated
            cache if `cache` was given; then the probabilities if asked for.
        """
        if self.cross_attention and key_value is None and cache is None:
            raise ValueError("A cross-attention layer needs `key_value` (or a filled `cache`).")
        if not self.cross_attention and key_value is not None:
            raise ValueError(
                "This is a self-attention layer; build it with `cross_attention=True` "
                "to attend to a second sequence."
            )
        if cache is not None:
            self._check_cache(cache)
        # Keys and values read from a cache are [batch, heads, length, head_size].
        keys_from_cache = False
        if self.cross_attention:
            (query_heads,) = self._split_heads(self.query_dense(query), 1)
            if cache is not None and key_value is None:
                key_heads, value_heads = cache
                keys_from_cache = True
            else:
                key_heads, value_heads = self._split_heads(self.key_value_dense(key_value), 2)
                if cache is not None:
                    cache = (_heads_first(key_heads), _heads_first(value_heads))
        else:
            query_heads, key_heads, value_heads = self._split_heads(self.qkv_dense(query), 3)
            if cache is not None:
                if cache_update_index is None:
                    raise ValueError("A self-attention `cache` needs `cache_update_index`.")
                # In-place writes of the new entries; XLA keeps the two cache buffers.
                start = [0, 0, cache_update_index, 0]
                cache = tuple(
                    ops.slice_update(buffer, start, ops.cast(_heads_first(new), buffer.dtype))
                    for buffer, new in zip(cache, (key_heads, value_heads), strict=True)
                )
                key_heads, value_heads = cache
                keys_from_cache = True

        batch_size = ops.shape(query_heads)[0]
        query_length = ops.shape(query_heads)[1]
        key_length = ops.shape(key_heads)[2 if keys_from_cache else 1]
        needs_dropout = training and self.dropout > 0
        use_fused_kernel = not (return_attention_scores or needs_dropout)
        if keys_from_cache:
            if use_fused_kernel and query_heads.shape[1] != 1:
                # A multi-token pass over the cache (a prompt) is worth the fused kernel,
                # which takes [batch, length, heads, head_size]: one transpose per prompt.
                key_heads, value_heads = _heads_first(key_heads), _heads_first(value_heads)
                keys_from_cache = False
            else:
                # A one-token step reads the cache as it lies, in two small matmuls.
                use_fused_kernel = False
        # A whole sequence attending to itself hands causality to the fused kernel as a
        # flag: cuDNN then skips the blocks above the diagonal instead of reading a mask.
        kernel_is_causal = (
            use_fused_kernel and use_causal_mask and cache is None and not self.cross_attention
        )
        mask = merge_attention_masks(
            batch_size,
            query_length,
            key_length,
            padding_mask=padding_mask,
            attention_mask=attention_mask,
            use_causal_mask=use_causal_mask and not kernel_is_causal,
            query_offset=0 if cache_update_index is None else cache_update_index,
        )
        scale = self.scale if self.scale is not None else 1.0 / float(self.head_size) ** 0.5
        if not use_fused_kernel:
            output, scores = self._explicit_attention(
                query_heads, key_heads, value_heads, mask, attention_bias, scale, training,
                keys_heads_first=keys_from_cache,
            )
        else:
            output = ops.dot_product_attention(
                query_heads,
                key_heads,
                value_heads,
                bias=attention_bias,
                mask=None if mask is None else mask[:, None, :, :],
                scale=scale,
                is_causal=kernel_is_causal,
            )
            scores = None
        output = ops.reshape(output, (batch_size, query_length, self.num_heads * self.head_size))
        output = self.output_dense(output)
        results = [output]
        if cache is not None:
            results.append(cache)
        if return_attention_scores:
            results.append(scores)
        return results[0] if len(results) == 1 else tuple(results)

    def compute_key_value_cache(self, key_value) -> tuple:
        """Cross-attention `(keys, values)` of `key_value`, each `[batch, heads, seq, head_size]`.

        Computed once per encoder output and passed back as `cache`, so a decoder
        does not re-project the encoder states at every generated token.
        """
        if not self.cross_attention:
            raise ValueError("Only a cross-attention layer has a fixed key/value cache.")
        key, value = self._split_heads(self.key_value_dense(key_value), 2)
        return _heads_first(key), _heads_first(value)

    def _check_cache(self, cache) -> None:
        if not (isinstance(cache, (tuple, list)) and len(cache) == 2):
            raise ValueError(
                "`cache` must be a (keys, values) pair, each [batch, heads, max_length, "
                f"head_size]; received {type(cache).__name__}. Build one with the model's "
                "`initial_cache` (or `compute_key_value_cache` for cross-attention)."
            )
        expected = (self.num_heads, None, self.head_size)
        for buffer in cache:
            if len(buffer.shape) != 4 or any(
                want is not None and got is not None and got != want
                for got, want in zip(buffer.shape[1:], expected, strict=True)
            ):
                raise ValueError(
                    f"A cache buffer has shape {tuple(buffer.shape)}; this layer needs "
                    f"[batch, {self.num_heads} heads, max_length, {self.head_size}]."
                )

    def _explicit_attention(
        self, query, key, value, mask, bias, scale, training, keys_heads_first=False
    ):
        keys = "bnsh" if keys_heads_first else "bsnh"
        logits = ops.einsum(f"btnh,{keys}->bnts", query, key)
        # Softmax in float32 even under mixed precision: float16 logits overflow.
        logits = ops.cast(logits, "float32") * scale
        if bias is not None:
            logits = logits + ops.cast(bias, "float32")
        if mask is not None:
            logits = ops.where(mask[:, None, :, :], logits, -1e9)
        probabilities = ops.softmax(logits, axis=-1)
        dropped = self.dropout_layer(ops.cast(probabilities, self.compute_dtype), training=training)
        output = ops.einsum(f"bnts,{keys}->btnh", dropped, value)
        return output, probabilities

    def compute_output_shape(self, query_shape, key_value_shape=None):
        return query_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            head_size=self.head_size,
            cross_attention=self.cross_attention,
            use_bias=self.use_bias,
            scale=self.scale,
            dropout=self.dropout,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


def _heads_first(x):
    """`[batch, length, heads, head_size]` <-> `[batch, heads, length, head_size]`."""
    return ops.transpose(x, (0, 2, 1, 3))
