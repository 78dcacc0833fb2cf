"""GPT with a language-model head tied to its token embedding, and text generation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from keras import ops

from keras_llm.generation import BeamSampler, Sampler, beam_search_loop, get_sampler, sample_loop
from keras_llm.layers import project_onto_embeddings
from keras_llm.models.backbone import Tensor
from keras_llm.models.generative_task import GenerativeTask, check_max_new_tokens, pad_rows
from keras_llm.models.gpt.gpt import Gpt, unpack_gpt_inputs

if TYPE_CHECKING:
    from keras_llm.tokenizers.string_tokenizer import StringTokenizer


@keras.saving.register_keras_serializable(package="keras_llm")
class GptCausalLM(GenerativeTask):
    """Next-token logits `[batch, seq, vocab]` from a `Gpt`, and `generate`.

    Called on `{"token_ids", "padding_mask"}` it returns the logits of every
    position. Trained with `fit(x)` and no labels, the loss is the cross-entropy
    of each token given the ones before it, over real (unpadded) tokens only;
    `compile()` with no arguments sets AdamW, that loss and a `Perplexity`
    metric.

    Args:
        backbone: a `Gpt`.
        tokenizer: optional tokenizer (e.g. `keras_llm.tokenizers.BytePairTokenizer`)
            so that `generate` takes and returns strings.

    Example:
    >>> import numpy as np, keras_llm
    >>> lm = keras_llm.models.GptCausalLM(keras_llm.models.Gpt.from_preset("gpt2_tiny"))
    >>> tuple(lm({"token_ids": np.array([[464, 3290]])}).shape)
    (1, 2, 50257)
    >>> tuple(lm.generate(np.array([[464, 3290]]), max_new_tokens=3).shape)
    (1, 5)
    """

    backbone_class = Gpt

    def __init__(self, backbone: Gpt, tokenizer: StringTokenizer | None = None,
                 **kwargs: Any) -> None:
        super().__init__(backbone, tokenizer=tokenizer, **kwargs)

    def build_head(self, input_shape):
        pass  # The head is the backbone's token embedding.

    def logits(self, hidden_states: Tensor) -> Tensor:
        """Projects hidden states onto the vocabulary with the tied embedding matrix
        (dequantized on the fly after `quantize`)."""
        return project_onto_embeddings(hidden_states, self.backbone.token_embedding)

    def call(self, inputs, training=None):
        return self.logits(self.backbone(inputs, training=training))

    # Training: labels are the inputs shifted by one, padding ignored.

    def loss_targets(self, x: dict[str, Tensor] | Tensor, y: Tensor | None, y_pred: Tensor,
                     sample_weight: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        if y is not None:
            if sample_weight is None and isinstance(x, dict) and "padding_mask" in x:
                sample_weight = x["padding_mask"]
            return y, y_pred, sample_weight
        token_ids, padding_mask = unpack_gpt_inputs(x)
        if padding_mask is None:
            padding_mask = ops.ones_like(token_ids)
        return token_ids[:, 1:], y_pred[:, :-1], ops.cast(padding_mask[:, 1:], "float32")

    def generate(
        self,
        prompts: str | Sequence[str] | Sequence[Sequence[int]] | Tensor,
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
        pad_token_id: int | None = None,
        jit_compile: bool = True,
    ) -> np.ndarray | str | list[str]:
        """Continues each prompt by `max_new_tokens` tokens.

        Args:
            prompts: a string or list of strings (needs `tokenizer`; returns the
                prompt and its continuation as strings), or token ids: an int array
                `[batch, prompt_len]` or a list of id lists of different lengths
                (returns an int32 array `[batch, longest_prompt + max_new_tokens]`,
                prompts included, each row's continuation right after its own
                prompt, padded with `pad_token_id`).
            max_new_tokens: tokens to add to every prompt.
            strategy: `"greedy"`, `"random"` (temperature only), `"top_k"`,
                `"top_p"`, `"beam"`, or a `keras_llm.generation.Sampler`.
            temperature, top_k, top_p: sampling parameters.
            num_beams, length_penalty: beam-search parameters.
            seed: makes random strategies reproducible; a new seed needs no
                recompilation.
            stop_token_ids: a row ends after one of these. Strings default to the
                tokenizer's end token; ids default to none.
            pad_token_id: fills positions after a row ends (default: the first stop
                token, else 0).
            jit_compile: compile the whole decode loop with XLA (TensorFlow and JAX).

        The loop is compiled once per (batch size, padded prompt length,
        `max_new_tokens`, strategy) and reused: later calls with new prompts of
        the same shapes do not recompile.
        """
        rows, text, single = self.tokenize_prompts(prompts)
        if text and stop_token_ids is None:
            end_token = getattr(self.tokenizer, "end_token_id", None)
            stop_token_ids = [] if end_token is None else [end_token]
        stop_token_ids = tuple(int(t) for t in (stop_token_ids or ()))
        if pad_token_id is None:
            pad_token_id = stop_token_ids[0] if stop_token_ids else 0
        check_max_new_tokens(max_new_tokens)
        width = max((len(r) for r in rows), default=0)
        limit = self.backbone.max_sequence_length - max_new_tokens
        if width > limit:
            raise ValueError(
                f"A prompt of {width} tokens plus max_new_tokens={max_new_tokens} exceeds the "
                f"model's {self.backbone.max_sequence_length} positions; shorten prompts to at "
                f"most {limit} tokens or ask for fewer new tokens."
            )
        # Pre-filled with padding: the loop may stop before reaching the end.
        token_ids, prompt_lengths = pad_rows(
            rows, width + max_new_tokens, self.backbone.vocab_size, int(pad_token_id)
        )
        sampler = get_sampler(strategy, temperature, top_k, top_p, num_beams, length_penalty)
        function = self.decode_function(
            (sampler.cache_key(), stop_token_ids, int(pad_token_id), max_new_tokens),
            lambda: self._make_generate_function(
                sampler, max_new_tokens, stop_token_ids, int(pad_token_id)
            ),
            jit_compile,
        )
        output = ops.convert_to_numpy(function(
            ops.convert_to_tensor(token_ids),
            ops.convert_to_tensor(prompt_lengths),
            ops.convert_to_tensor(np.int32(seed)),
        ))
        if not text:
            return output
        texts = []
        for row, length in zip(output, prompt_lengths, strict=True):
            ids = [int(t) for t in row[: length + max_new_tokens]]
            texts.append(self.detokenize(_cut_at_stop(ids, int(length), stop_token_ids)))
        return texts[0] if single else texts

    def _make_generate_function(self, sampler, max_new_tokens, stop_token_ids, pad_token_id):
        backbone = self.backbone

        def step(token_ids, cache, index):
            hidden, cache = backbone.call_with_cache(token_ids, cache, index)
            return self.logits(hidden)[:, -1, :], cache

        def generate(token_ids, prompt_lengths, seed):
            batch, total_length = token_ids.shape
            prompt_width = total_length - max_new_tokens
            cache = backbone.initial_cache(batch, total_length)
            # Fill the cache with the (padded) prompts in one pass.
            _, cache = backbone.call_with_cache(token_ids[:, :prompt_width], cache, 0)
            if isinstance(sampler, BeamSampler):
                return beam_search_loop(step, token_ids, prompt_lengths, cache, sampler,
                                        max_new_tokens, stop_token_ids, pad_token_id)
            return sample_loop(step, token_ids, prompt_lengths, cache, sampler, seed,
                               max_new_tokens, stop_token_ids, pad_token_id)

        return generate

    @classmethod
    def from_pretrained(cls, path: str, tokenizer=None, **kwargs) -> GptCausalLM:
        """Loads a local Hugging Face GPT-2 folder; `tokenizer` optional."""
        return cls(Gpt.from_pretrained(path, **kwargs), tokenizer=tokenizer)


def _cut_at_stop(ids: list[int], prompt_length: int, stop_token_ids: tuple) -> list[int]:
    for position in range(prompt_length, len(ids)):
        if ids[position] in stop_token_ids:
            return ids[:position]
    return ids
