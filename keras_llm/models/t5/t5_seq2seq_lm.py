"""T5 with its language-model head: text-to-text training and generation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import ops

from keras_llm.generation import BeamSampler, Sampler, beam_search_loop, get_sampler, sample_loop
from keras_llm.layers import project_onto_embeddings
from keras_llm.models.backbone import Tensor
from keras_llm.models.generative_task import GenerativeTask, check_max_new_tokens, pad_rows
from keras_llm.models.t5.t5 import T5

if TYPE_CHECKING:
    from keras_llm.tokenizers.string_tokenizer import StringTokenizer


def shift_right(labels, decoder_start_token_id: int = 0):
    """Decoder inputs for teacher forcing: the labels shifted right behind the start token."""
    start = ops.full_like(labels[:, :1], decoder_start_token_id)
    return ops.concatenate([start, labels[:, :-1]], axis=1)


@keras.saving.register_keras_serializable(package="keras_llm")
class T5Seq2SeqLM(GenerativeTask):
    """Decoder logits `[batch, decoder_seq, vocab]` from a `T5`, and `generate`.

    Called on `{"encoder_token_ids", "encoder_padding_mask", "decoder_token_ids",
    "decoder_padding_mask"}`. Train with `fit(x, labels)` where
    `x["decoder_token_ids"] = shift_right(labels)`; the loss ignores positions
    where `decoder_padding_mask` is 0. With tied embeddings the decoder output is
    scaled by `hidden_size ** -0.5` before the projection, as T5 v1.0 does.

    Args:
        backbone: a `T5`.
        tokenizer: optional (e.g. `SentencePieceTokenizer(..., add_end_token=True)`)
            so that `generate` takes and returns strings.
        decoder_start_token_id: first decoder input (T5: 0, the pad id).
        end_token_id: `</s>`; generation of a row stops after it (T5: 1).
        pad_token_id: fills inputs and outputs past their end (T5: 0).

    Example:
    >>> import numpy as np, keras_llm
    >>> lm = keras_llm.models.T5Seq2SeqLM(keras_llm.models.T5.from_preset("t5_tiny"))
    >>> tuple(lm.generate(np.array([[37, 423, 1]]), max_new_tokens=4).shape)
    (1, 4)
    """

    backbone_class = T5
    default_input_keys = ("encoder_token_ids", "decoder_token_ids")

    def __init__(self, backbone: T5, tokenizer: StringTokenizer | None = None,
                 decoder_start_token_id: int = 0, end_token_id: int = 1, pad_token_id: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(backbone, tokenizer=tokenizer, **kwargs)
        for name, value in (("decoder_start_token_id", decoder_start_token_id),
                            ("end_token_id", end_token_id), ("pad_token_id", pad_token_id)):
            if not 0 <= value < backbone.vocab_size:
                raise ValueError(
                    f"{name}={value} is not in the vocabulary [0, {backbone.vocab_size})."
                )
        self.decoder_start_token_id = decoder_start_token_id
        self.end_token_id = end_token_id
        self.pad_token_id = pad_token_id
        self.lm_head = None
        if not backbone.tie_embeddings:
            self.lm_head = keras.layers.Dense(
                backbone.vocab_size, use_bias=False, dtype=self.dtype_policy, name="lm_head"
            )

    def build_head(self, input_shape):
        if self.lm_head is not None and not self.lm_head.built:
            self.lm_head.build((None, None, self.backbone.hidden_size))

    def logits(self, hidden_states: Tensor) -> Tensor:
        if self.lm_head is not None:
            return self.lm_head(hidden_states)
        hidden_states = hidden_states * (self.backbone.hidden_size ** -0.5)
        return project_onto_embeddings(hidden_states, self.backbone.token_embedding)

    def call(self, inputs, training=None):
        return self.logits(self.backbone(inputs, training=training)["decoder_sequence_output"])

    def loss_targets(self, x: dict[str, Tensor] | Tensor, y: Tensor | None, y_pred: Tensor,
                     sample_weight: Tensor | None) -> tuple[Tensor | None, Tensor, Tensor | None]:
        if sample_weight is None and isinstance(x, dict) and "decoder_padding_mask" in x:
            sample_weight = ops.cast(x["decoder_padding_mask"], "float32")
        return y, y_pred, sample_weight

    def generate(
        self,
        inputs: str | Sequence[str] | Sequence[Sequence[int]] | Tensor,
        max_new_tokens: int = 32,
        strategy: str | Sampler = "greedy",
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        num_beams: int = 4,
        length_penalty: float = 1.0,
        seed: int = 0,
        stop_token_ids: Sequence[int] | None = None,
        jit_compile: bool = True,
    ) -> np.ndarray | str | list[str]:
        """Generates up to `max_new_tokens` decoder tokens for each input.

        Args:
            inputs: a string or list of strings (needs `tokenizer`; returns strings),
                or encoder token ids (an int array `[batch, seq]` or a list of id
                lists; returns an int32 array `[batch, max_new_tokens]` of decoder
                tokens without the start token, padded after `</s>`).
            strategy and the rest: as `GptCausalLM.generate`; the same samplers and
                decode loops. Rows stop after `end_token_id` unless `stop_token_ids`
                says otherwise.

        The encoder runs once; the decoder uses a static self-attention cache and
        cross-attention keys and values computed once, in one compiled loop that
        later calls with the same shapes reuse.
        """
        rows, text, single = self.tokenize_prompts(inputs)
        check_max_new_tokens(max_new_tokens)
        width = max((len(r) for r in rows), default=0)
        if width > self.backbone.max_sequence_length:
            raise ValueError(
                f"An input of {width} tokens exceeds this T5's max_sequence_length="
                f"{self.backbone.max_sequence_length}; truncate it."
            )
        if max_new_tokens + 1 > self.backbone.max_sequence_length:
            raise ValueError(f"max_new_tokens={max_new_tokens} exceeds max_sequence_length.")
        encoder_ids, lengths = pad_rows(rows, width, self.backbone.vocab_size,
                                        self.pad_token_id, what="Input")
        encoder_mask = np.arange(width)[None, :] < lengths[:, None]
        stop_token_ids = tuple(int(t) for t in (
            (self.end_token_id,) if stop_token_ids is None else stop_token_ids))
        decoder_ids = np.full((len(rows), 1 + max_new_tokens), self.pad_token_id, "int32")
        decoder_ids[:, 0] = self.decoder_start_token_id
        sampler = get_sampler(strategy, temperature, top_k, top_p, num_beams, length_penalty)
        function = self.decode_function(
            (sampler.cache_key(), stop_token_ids, max_new_tokens),
            lambda: self.make_decode_function(sampler, stop_token_ids, max_new_tokens),
            jit_compile,
        )
        output = ops.convert_to_numpy(function(
            ops.convert_to_tensor(encoder_ids),
            ops.convert_to_tensor(encoder_mask),
            ops.convert_to_tensor(decoder_ids),
            ops.convert_to_tensor(np.ones(len(rows), "int32")),
            ops.convert_to_tensor(np.int32(seed)),
            ops.convert_to_tensor(np.int32(max_new_tokens)),
        ))[:, 1:]
        if not text:
            return output
        texts = []
        for row in output:
            ids = [int(t) for t in row]
            for position, token in enumerate(ids):
                if token in stop_token_ids:
                    ids = ids[:position]
                    break
            texts.append(self.detokenize(ids))
        return texts[0] if single else texts

    def make_decode_function(self, sampler: Sampler, stop_token_ids: tuple,
                             fixed_new_tokens: int | None = None) -> Callable[..., Tensor]:
        """The uncompiled decode function `generate` compiles (and export traces):

        `(encoder_ids, encoder_mask, decoder_ids, prompt_lengths, seed, max_new_tokens)`
        -> decoder ids; `decoder_ids` is the `[batch, 1 + cap]` buffer starting with
        the start token, and `max_new_tokens` (a scalar, possibly a tensor) ends rows
        earlier than the buffer. `fixed_new_tokens`, the cap as a Python int, replaces
        that argument where every call decodes the whole buffer (`generate`), so that
        the loop can plan its steps (`sample_loop`'s `steps_per_check`).
        """
        backbone = self.backbone

        def step(token_ids, cache, index):
            hidden, self_cache = backbone.decode_with_cache(
                token_ids, cache["self"], cache["cross"], cache["encoder_padding_mask"], index
            )
            return self.logits(hidden)[:, -1, :], {**cache, "self": self_cache}

        def generate(encoder_ids, encoder_mask, decoder_ids, prompt_lengths, seed,
                     max_new_tokens):
            encoder_output = backbone.encode(encoder_ids, encoder_mask)
            # Beam search reorders every entry of the cache, the encoder mask included.
            cache = {
                "self": backbone.initial_cache(ops.shape(decoder_ids)[0], decoder_ids.shape[1]),
                "cross": backbone.cross_attention_cache(encoder_output),
                "encoder_padding_mask": encoder_mask,
            }
            if isinstance(sampler, BeamSampler):
                return beam_search_loop(step, decoder_ids, prompt_lengths, cache, sampler,
                                        max_new_tokens, stop_token_ids, self.pad_token_id)
            if fixed_new_tokens is not None:
                max_new_tokens = fixed_new_tokens
            return sample_loop(step, decoder_ids, prompt_lengths, cache, sampler, seed,
                               max_new_tokens, stop_token_ids, self.pad_token_id)

        return generate

    def head_config(self):
        return {
            **super().head_config(),
            "decoder_start_token_id": self.decoder_start_token_id,
            "end_token_id": self.end_token_id,
            "pad_token_id": self.pad_token_id,
        }

    @classmethod
    def from_pretrained(cls, path: str, tokenizer=None, **kwargs) -> T5Seq2SeqLM:
        """Loads a local Hugging Face T5 folder, LM head included."""
        from keras_llm.convert.t5 import load_t5

        return load_t5(path, with_lm_head=True, tokenizer=tokenizer, **kwargs)[1]
