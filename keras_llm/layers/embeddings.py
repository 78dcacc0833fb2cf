"""Token + learned position + segment embeddings, as BERT and GPT-2 use them."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from keras_llm.layers.dense import clone_initializer
from keras_llm.layers.layer_normalization import LayerNormalization


def _concrete_numpy(x):
    """Returns `x` as numpy when it holds values now (eager), else `None` (traced)."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return ops.convert_to_numpy(x)
    except Exception:  # A symbolic tensor or a tracer: checks happen at run time only.
        return None


def check_token_ids(token_ids, vocab_size: int, name: str = "token_ids") -> None:
    """Raises a `ValueError` naming the bad id when eager ids fall outside `[0, vocab_size)`.

    Under `tf.function`/`jit` the values are unknown; there TensorFlow's CPU
    gather raises on its own, but GPUs and JAX would silently clip, so eager
    calls check here first.

    Example:
    >>> import numpy as np
    >>> check_token_ids(np.array([[5, 99]]), vocab_size=100)  # In range: nothing happens.
    >>> try:
    ...     check_token_ids(np.array([[5, 100]]), vocab_size=100)
    ... except ValueError as error:
    ...     print(error)
    `token_ids` holds id 100, outside the vocabulary [0, 100). Tokenize with ...
    """
    values = _concrete_numpy(token_ids)
    if values is None or values.size == 0:
        return
    low, high = values.min(), values.max()
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(
            f"`{name}` holds id {int(bad)}, outside the vocabulary [0, {vocab_size}). "
            "Tokenize with the vocabulary this model was built for, or pass "
            f"`vocab_size` large enough for your ids."
        )


def project_onto_embeddings(inputs, embedding: keras.layers.Embedding):
    """`inputs @ E^T`: hidden states `[..., hidden]` to logits `[..., input_dim]`.

    `E` is the `[input_dim, hidden]` matrix of `embedding`, as a tied output head
    uses it. After `model.quantize(...)` the layer's `embeddings` variable holds
    quantized integers, not the matrix, so heads must not read it directly:

    - float (not quantized): the plain matmul, in `inputs`' dtype;
    - `"int8"`: Keras stores `q = round(E * s)` with one scale `s` per row (per
      vocabulary entry, i.e. per output logit), so `inputs @ q^T / s` is exactly
      the dequantized projection and no float copy of `E` is scaled;
    - any other mode: the layer dequantizes its own rows (`embedding(arange)`).

    Args:
        inputs: `[..., hidden]`.
        embedding: a built `keras.layers.Embedding` of width `hidden`.

    Returns:
        Logits `[..., input_dim]` in the dtype of `inputs`.

    Example:
    >>> import numpy as np, keras
    >>> embedding = keras.layers.Embedding(10, 4)
    >>> embedding.build((None,))
    >>> tuple(project_onto_embeddings(np.ones((2, 3, 4), "float32"), embedding).shape)
    (2, 3, 10)
    """
    inputs = ops.convert_to_tensor(inputs)
    mode = embedding.quantization_mode
    if mode is None:
        matrix = ops.cast(embedding.embeddings, inputs.dtype)
        return ops.matmul(inputs, ops.transpose(matrix))
    if mode == "int8" and not embedding.lora_enabled:
        quantized = ops.cast(embedding.embeddings, inputs.dtype)
        logits = ops.matmul(inputs, ops.transpose(quantized))
        return logits / ops.cast(embedding.embeddings_scale, inputs.dtype)
    matrix = embedding(ops.arange(embedding.input_dim))
    return ops.matmul(inputs, ops.transpose(ops.cast(matrix, inputs.dtype)))


@keras.saving.register_keras_serializable(package="keras_llm")
class Embeddings(keras.layers.Layer):
    """Sums token, learned position and (optionally) segment embeddings.

    Then layer normalization and dropout, as in BERT; GPT-2 passes
    `normalize=False` and `type_vocab_size=0`.

    Args:
        vocab_size: number of token ids.
        hidden_size: embedding width.
        max_sequence_length: number of learned positions.
        type_vocab_size: number of segment ids; 0 disables segment embeddings.
        normalize: apply layer normalization to the sum.
        layer_norm_epsilon: epsilon of that layer normalization.
        dropout: dropout rate on the output.
        initializer_range: standard deviation of the truncated-normal initializer.

    Example:
    >>> import numpy as np
    >>> embeddings = Embeddings(vocab_size=100, hidden_size=8, max_sequence_length=16)
    >>> tuple(embeddings(np.array([[5, 6, 7]]), segment_ids=np.array([[0, 0, 1]])).shape)
    (1, 3, 8)
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        max_sequence_length: int,
        type_vocab_size: int = 2,
        normalize: bool = True,
        layer_norm_epsilon: float = 1e-12,
        dropout: float = 0.0,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_sequence_length = max_sequence_length
        self.type_vocab_size = type_vocab_size
        self.normalize = normalize
        self.layer_norm_epsilon = layer_norm_epsilon
        self.dropout = dropout
        self.initializer_range = initializer_range
        initializer = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.token_embedding = keras.layers.Embedding(
            vocab_size,
            hidden_size,
            embeddings_initializer=clone_initializer(initializer),
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        self.position_embedding = keras.layers.Embedding(
            max_sequence_length,
            hidden_size,
            embeddings_initializer=clone_initializer(initializer),
            dtype=self.dtype_policy,
            name="position_embedding",
        )
        self.segment_embedding = None
        if type_vocab_size:
            self.segment_embedding = keras.layers.Embedding(
                type_vocab_size,
                hidden_size,
                embeddings_initializer=clone_initializer(initializer),
                dtype=self.dtype_policy,
                name="segment_embedding",
            )
        self.layer_norm = None
        if normalize:
            self.layer_norm = LayerNormalization(
                epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm"
            )
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, token_ids_shape, segment_ids_shape=None):
        self.token_embedding.build(token_ids_shape)
        self.position_embedding.build(token_ids_shape)
        if self.segment_embedding is not None:
            self.segment_embedding.build(token_ids_shape)
        if self.layer_norm is not None:
            self.layer_norm.build(tuple(token_ids_shape) + (self.hidden_size,))
        self.built = True

    def call(self, token_ids, segment_ids=None, start_index=0, training=None):
        """Embeds `token_ids` `[batch, seq]` at positions `start_index ...`."""
        length = token_ids.shape[-1]
        if isinstance(length, int) and length > self.max_sequence_length:
            raise ValueError(
                f"The input has {length} tokens but the model has only "
                f"{self.max_sequence_length} positions. Truncate the input (the "
                "preprocessor's `sequence_length`) to at most that many tokens."
            )
        check_token_ids(token_ids, self.vocab_size)
        embedded = self.token_embedding(token_ids)
        positions = ops.arange(ops.shape(token_ids)[-1]) + start_index
        embedded = embedded + self.position_embedding(positions)[None]
        if self.segment_embedding is not None:
            if segment_ids is None:
                segment_ids = ops.zeros_like(token_ids)
            check_token_ids(segment_ids, self.type_vocab_size, "segment_ids")
            embedded = embedded + self.segment_embedding(segment_ids)
        if self.layer_norm is not None:
            embedded = self.layer_norm(embedded)
        return self.dropout_layer(embedded, training=training)

    def compute_output_shape(self, token_ids_shape, segment_ids_shape=None):
        return tuple(token_ids_shape) + (self.hidden_size,)

    def get_config(self):
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            max_sequence_length=self.max_sequence_length,
            type_vocab_size=self.type_vocab_size,
            normalize=self.normalize,
            layer_norm_epsilon=self.layer_norm_epsilon,
            dropout=self.dropout,
            initializer_range=self.initializer_range,
        )
        return config
