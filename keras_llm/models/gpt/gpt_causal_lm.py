"""GPT with a language-model head tied to its token embedding, and text generation."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_llm.generation import (
    BeamSampler,
    beam_search_loop,
    compile_stateful,
    get_sampler,
    sample_loop,
)
from keras_llm.metrics import Perplexity
from keras_llm.models.gpt.gpt import Gpt, unpack_gpt_inputs
from keras_llm.models.task import Task


def _is_text(prompts) -> bool:
    if isinstance(prompts, (str, bytes)):
        return True
    if isinstance(prompts, (list, tuple)):
        return len(prompts) > 0 and all(isinstance(p, (str, bytes)) for p in prompts)
    return isinstance(prompts, np.ndarray) and prompts.dtype.kind in "OSU"


@keras.saving.register_keras_serializable(package="keras_llm")
class GptCausalLM(Task):
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
    >>> lm({"token_ids": np.array([[464, 3290]])}).shape
    (1, 2, 50257)
    >>> lm.generate(np.array([[464, 3290]]), max_new_tokens=3).shape
    (1, 5)
    """

    backbone_class = Gpt

    def __init__(self, backbone: Gpt, tokenizer=None, **kwargs):
        super().__init__(backbone, **kwargs)
        self.tokenizer = tokenizer
        self._generate_functions: dict = {}
        self.generate_trace_count = 0

    def build_head(self, input_shape):
        pass  # The head is the backbone's token embedding.

    def logits(self, hidden_states):
        """Projects hidden states onto the vocabulary with the tied embedding matrix."""
        embedding = ops.cast(self.backbone.token_embedding.embeddings, hidden_states.dtype)
        return ops.matmul(hidden_states, ops.transpose(embedding))

    def call(self, inputs, training=None):
        return self.logits(self.backbone(inputs, training=training))

    # Training: labels are the inputs shifted by one, padding ignored.

    def _language_model_targets(self, x, y, y_pred, sample_weight):
        if y is not None:
            if sample_weight is None and isinstance(x, dict) and "padding_mask" in x:
                sample_weight = x["padding_mask"]
            return y, y_pred, sample_weight
        token_ids, padding_mask = unpack_gpt_inputs(x)
        if padding_mask is None:
            padding_mask = ops.ones_like(token_ids)
        return token_ids[:, 1:], y_pred[:, :-1], ops.cast(padding_mask[:, 1:], "float32")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        y, y_pred, sample_weight = self._language_model_targets(x, y, y_pred, sample_weight)
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        y, y_pred, sample_weight = self._language_model_targets(x, y, y_pred, sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def compile(self, optimizer="adamw", loss="auto", metrics="auto", **kwargs):
        """Like `keras.Model.compile`; `"auto"` gives the masked LM loss and perplexity."""
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="mean_with_sample_weight"
            )
        if metrics == "auto":
            # Weighted, so that the padding mask (the sample weight) reaches it.
            metrics = None
            kwargs.setdefault("weighted_metrics", [Perplexity()])
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    # Generation.

    def generate(
        self,
        prompts,
        max_new_tokens: int = 32,
        strategy="greedy",
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
    ):
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
        text = _is_text(prompts)
        single = isinstance(prompts, (str, bytes))
        if text:
            if self.tokenizer is None:
                raise ValueError(
                    "String prompts need a tokenizer: build the model with "
                    "`GptCausalLM(gpt, tokenizer=BytePairTokenizer.from_pretrained(path))`, "
                    "or pass token ids."
                )
            rows = self.tokenizer([prompts] if single else list(prompts)).to_list()
            if stop_token_ids is None and getattr(self.tokenizer, "end_token_id", None) is not None:
                stop_token_ids = [self.tokenizer.end_token_id]
        else:
            rows = _id_rows(prompts)
        stop_token_ids = tuple(int(t) for t in (stop_token_ids or ()))
        if pad_token_id is None:
            pad_token_id = stop_token_ids[0] if stop_token_ids else 0
        token_ids, prompt_lengths = self._prepare_prompts(rows, max_new_tokens, int(pad_token_id))
        sampler = get_sampler(strategy, temperature, top_k, top_p, num_beams, length_penalty)

        if not self.built:  # Weights must exist before compilation captures them.
            self.build({"token_ids": (None, None)})
        key = (sampler.cache_key(), stop_token_ids, int(pad_token_id), max_new_tokens, jit_compile)
        if key not in self._generate_functions:
            self._generate_functions[key] = compile_stateful(
                self._make_generate_function(
                    sampler, max_new_tokens, stop_token_ids, int(pad_token_id)
                ),
                self,
                jit_compile,
            )
        output = self._generate_functions[key](
            ops.convert_to_tensor(token_ids),
            ops.convert_to_tensor(prompt_lengths),
            ops.convert_to_tensor(np.int32(seed)),
        )
        output = ops.convert_to_numpy(output)
        if not text:
            return output
        texts = []
        for row, length in zip(output, prompt_lengths + max_new_tokens, strict=True):
            ids = [int(t) for t in row[:length]]
            ids = _cut_at_stop(ids, int(prompt_lengths[len(texts)]), stop_token_ids)
            texts.append(self._detokenize(ids))
        return texts[0] if single else texts

    def _detokenize(self, ids: list[int]) -> str:
        text = self.tokenizer.detokenize(np.array(ids, "int32"))
        text = ops.convert_to_numpy(text) if not isinstance(text, (str, bytes)) else text
        if isinstance(text, np.ndarray):
            text = text.item()
        # A sampled token can end mid-character; HF decodes with replacement too.
        return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text

    def _prepare_prompts(self, rows: list, max_new_tokens: int, pad_token_id: int):
        if int(max_new_tokens) != max_new_tokens or max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be a positive integer; got {max_new_tokens}.")
        if not rows:
            raise ValueError("No prompts given.")
        lengths = np.array([len(r) for r in rows], "int32")
        if lengths.min() == 0:
            raise ValueError(
                f"Prompt {int(np.argmin(lengths))} is empty; every prompt needs at least one "
                "token (start an unconditional sample with the end-of-text token)."
            )
        limit = self.backbone.max_sequence_length - max_new_tokens
        if lengths.max() > limit:
            raise ValueError(
                f"A prompt of {lengths.max()} tokens plus max_new_tokens={max_new_tokens} exceeds "
                f"the model's {self.backbone.max_sequence_length} positions; shorten prompts to "
                f"at most {limit} tokens or ask for fewer new tokens."
            )
        vocab_size = self.backbone.vocab_size
        # Pre-filled with padding: the loop may stop before reaching the end.
        token_ids = np.full((len(rows), lengths.max() + max_new_tokens), pad_token_id, "int32")
        for i, row in enumerate(rows):
            row = np.asarray(row)
            if row.size and (row.min() < 0 or row.max() >= vocab_size):
                bad = row[(row < 0) | (row >= vocab_size)][0]
                raise ValueError(
                    f"Prompt {i} holds token id {bad}, outside the vocabulary [0, {vocab_size})."
                )
            token_ids[i, : len(row)] = row
        return token_ids, lengths

    def _make_generate_function(self, sampler, max_new_tokens, stop_token_ids, pad_token_id):
        backbone = self.backbone

        def step(token_ids, cache, index):
            hidden, cache = backbone.call_with_cache(token_ids, cache, index)
            return self.logits(hidden)[:, -1, :], cache

        def generate(token_ids, prompt_lengths, seed):
            self.generate_trace_count += 1  # Runs once per trace, not per call.
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

    def head_config(self):
        if self.tokenizer is None:
            return {}
        return {"tokenizer": keras.saving.serialize_keras_object(self.tokenizer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "tokenizer" in config:
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return super().from_config(config)

    @classmethod
    def from_pretrained(cls, path: str, tokenizer=None, **kwargs) -> GptCausalLM:
        """Loads a local Hugging Face GPT-2 folder; `tokenizer` optional."""
        return cls(Gpt.from_pretrained(path, **kwargs), tokenizer=tokenizer)


def _id_rows(prompts) -> list:
    if hasattr(prompts, "to_list"):  # A tf.RaggedTensor.
        return prompts.to_list()
    if isinstance(prompts, (list, tuple)) and prompts and not np.isscalar(prompts[0]):
        return [list(np.asarray(r).reshape(-1)) for r in prompts]
    array = np.asarray(ops.convert_to_numpy(prompts))
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.dtype.kind not in "iu":
        raise ValueError(
            "Token-id prompts must be an int array [batch, prompt_len] or a list of id lists; "
            f"received dtype {array.dtype} and shape {array.shape}."
        )
    return list(array)


def _cut_at_stop(ids: list[int], prompt_length: int, stop_token_ids: tuple) -> list[int]:
    for position in range(prompt_length, len(ids)):
        if ids[position] in stop_token_ids:
            return ids[:position]
    return ids
