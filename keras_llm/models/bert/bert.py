"""BERT: a stack of post-norm Transformer encoder blocks over token, position and segment
embeddings, with a tanh pooler on the `[CLS]` token (Devlin et al., 2019)."""

from __future__ import annotations

import keras
from keras import ops

from keras_llm.layers import (
    Embeddings,
    TransformerEncoderBlock,
    clone_initializer,
    rematerialized_call,
)
from keras_llm.models.backbone import Backbone, resolve_quantized_policies
from keras_llm.models.bert.bert_presets import BERT_PRESETS
from keras_llm.models.presets import register_presets

register_presets("Bert", BERT_PRESETS)


def unpack_bert_inputs(inputs) -> tuple:
    """`(token_ids, segment_ids, padding_mask)` from BERT's input dict, with defaults."""
    if not isinstance(inputs, dict) or "token_ids" not in inputs:
        raise ValueError(
            "BERT models take a dict with `token_ids` (and optionally `segment_ids` and "
            f"`padding_mask`), all [batch, seq]; received {type(inputs).__name__}"
            + (f" with keys {sorted(inputs)}" if isinstance(inputs, dict) else "")
            + ". Use `keras_llm.tokenizers.BertPreprocessor` to make one from strings."
        )
    unknown = set(inputs) - {"token_ids", "segment_ids", "padding_mask", "mask_positions"}
    if unknown:
        raise ValueError(
            f"Unexpected BERT input keys {sorted(unknown)}; expected `token_ids`, "
            "`segment_ids`, `padding_mask` (and `mask_positions` for pretraining)."
        )
    token_ids = inputs["token_ids"]
    if len(token_ids.shape) != 2:
        raise ValueError(
            f"`token_ids` must have shape [batch, seq]; received shape {token_ids.shape}."
        )
    segment_ids = inputs.get("segment_ids")
    padding_mask = inputs.get("padding_mask")
    for name, tensor in (("segment_ids", segment_ids), ("padding_mask", padding_mask)):
        if tensor is None:
            continue
        same = len(tensor.shape) == 2 and all(
            a == b or a is None or b is None
            for a, b in zip(tensor.shape, token_ids.shape, strict=True)
        )
        if not same:
            raise ValueError(
                f"`{name}` has shape {tensor.shape} but `token_ids` has shape "
                f"{token_ids.shape}; they must match."
            )
    if segment_ids is None:
        segment_ids = ops.zeros_like(token_ids)
    if padding_mask is None:
        padding_mask = ops.ones_like(token_ids)
    return token_ids, segment_ids, padding_mask


@keras.saving.register_keras_serializable(package="keras_llm")
class Bert(Backbone):
    """The BERT encoder.

    Takes a dict of `token_ids`, `segment_ids` and `padding_mask` (each
    `[batch, seq]`; the last two optional) and returns a dict with
    `sequence_output` `[batch, seq, hidden]` and `pooled_output` `[batch, hidden]`
    (`tanh(W h_[CLS] + b)`). Called with `return_attention_scores=True` it also
    returns `attention_scores`, a list with one `[batch, heads, seq, seq]` tensor
    of attention probabilities per layer; when not asked for they cost nothing.

    Args:
        vocab_size: number of token ids.
        num_layers: number of encoder blocks.
        num_heads: attention heads per block.
        hidden_size: width of the hidden states.
        intermediate_size: width of the feed-forward hidden layer.
        max_sequence_length: number of learned positions.
        type_vocab_size: number of segment ids.
        hidden_act: feed-forward activation (`"gelu"` exact, `"gelu_approximate"`, `"relu"`).
        dropout: dropout on embeddings, sublayer outputs and (unless
            `attention_dropout` is given) attention probabilities.
        attention_dropout: dropout on the attention probabilities; `None` uses
            `dropout`. With 0, training calls reach the backend's fused attention
            kernel (`keras.ops.dot_product_attention`, cuDNN flash attention on
            JAX) instead of materializing the probabilities to drop them.
        layer_norm_epsilon: epsilon of every layer normalization.
        initializer_range: standard deviation of the weight initializers.
        remat: recompute each encoder block's activations in the backward pass of a
            training call instead of keeping them (gradient checkpointing): the same
            gradients for several times less activation memory and about a third more
            compute. With TensorFlow on a CPU, bert_base trains at batch 32 x 512 in
            7.7 GiB with it and needs about 30 GiB without (`benchmarks/memory.py`; on
            JAX's CPU backend the peak did not fall).
        dtype: a dtype or policy for every layer, e.g. `"mixed_bfloat16"`.

    Example:
    >>> import numpy as np, keras_llm
    >>> bert = keras_llm.models.Bert.from_preset("bert_tiny")
    >>> outputs = bert({"token_ids": np.array([[101, 7592, 102, 0]]),
    ...                 "padding_mask": np.array([[1, 1, 1, 0]])})
    >>> tuple(outputs["sequence_output"].shape), tuple(outputs["pooled_output"].shape)
    ((1, 4, 128), (1, 128))
    """

    preset_family = "Bert"

    def __init__(
        self,
        vocab_size: int,
        num_layers: int,
        num_heads: int,
        hidden_size: int,
        intermediate_size: int,
        max_sequence_length: int = 512,
        type_vocab_size: int = 2,
        hidden_act: str = "gelu",
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        layer_norm_epsilon: float = 1e-12,
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
        self.type_vocab_size = type_vocab_size
        self.hidden_act = hidden_act
        self.dropout = dropout
        self.attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.remat = remat

        initializer = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.embeddings = Embeddings(
            vocab_size,
            hidden_size,
            max_sequence_length,
            type_vocab_size=type_vocab_size,
            layer_norm_epsilon=layer_norm_epsilon,
            dropout=dropout,
            initializer_range=initializer_range,
            dtype=self.dtype_policy,
            name="embeddings",
        )
        self.encoder_blocks = [
            TransformerEncoderBlock(
                num_heads,
                intermediate_size,
                activation=hidden_act,
                dropout=dropout,
                attention_dropout=self.attention_dropout,
                layer_norm_epsilon=layer_norm_epsilon,
                kernel_initializer=initializer,
                dtype=self.dtype_policy,
                name=f"encoder_block_{i}",
            )
            for i in range(num_layers)
        ]
        self.pooler = keras.layers.Dense(
            hidden_size,
            activation="tanh",
            kernel_initializer=clone_initializer(initializer),
            dtype=self.dtype_policy,
            name="pooler",
        )

    @property
    def token_embedding(self) -> keras.layers.Embedding:
        """The word embedding layer (tied to the masked-LM head's output)."""
        return self.embeddings.token_embedding

    def build(self, input_shape=None):
        shape = (None, None)
        if isinstance(input_shape, dict) and input_shape.get("token_ids") is not None:
            shape = tuple(input_shape["token_ids"])
        # Sublayers already built (e.g. by a cached call) keep their weights.
        if not self.embeddings.built:
            self.embeddings.build(shape)
        for block in self.encoder_blocks:
            if not block.built:
                block.build(shape + (self.hidden_size,))
        if not self.pooler.built:
            self.pooler.build((None, self.hidden_size))
        resolve_quantized_policies(self)
        self.built = True

    def call(self, inputs, training=None, return_attention_scores: bool = False):
        token_ids, segment_ids, padding_mask = unpack_bert_inputs(inputs)
        x = self.embeddings(token_ids, segment_ids=segment_ids, training=training)
        attention_scores = []
        for block in self.encoder_blocks:
            if self.remat and training and not return_attention_scores:
                x = rematerialized_call(block, x, padding_mask=padding_mask, training=training)
                continue
            x = block(
                x,
                padding_mask=padding_mask,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            if return_attention_scores:
                x, scores = x
                attention_scores.append(scores)
        outputs = {"sequence_output": x, "pooled_output": self.pooler(x[:, 0, :])}
        if return_attention_scores:
            outputs["attention_scores"] = attention_scores
        return outputs

    def get_config(self):
        # keras.Model's base config carries the dtype policy and name.
        return {
            **self.base_config(),
            "vocab_size": self.vocab_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "max_sequence_length": self.max_sequence_length,
            "type_vocab_size": self.type_vocab_size,
            "hidden_act": self.hidden_act,
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_range": self.initializer_range,
            "remat": self.remat,
        }

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> Bert:
        """Loads a local Hugging Face or Google BERT checkpoint (see `keras_llm.convert`).

        `path` is a folder with `config.json` and `model.safetensors` (or
        `pytorch_model.bin`), or one with `bert_config.json` and
        `bert_model.ckpt.*`. Keyword arguments override the checkpoint's config.
        """
        from keras_llm.convert.bert import load_bert_backbone

        return load_bert_backbone(path, **kwargs)
