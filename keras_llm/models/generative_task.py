"""What every text-generating task model shares: prompts in, compiled decoding, text out."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import ops

from keras_llm.generation import compile_stateful
from keras_llm.metrics import Perplexity
from keras_llm.models.task import Task


def is_text(prompts) -> bool:
    """Whether `prompts` are strings (one, a list, or a numpy string array)."""
    if isinstance(prompts, (str, bytes)):
        return True
    if isinstance(prompts, (list, tuple)):
        return len(prompts) > 0 and all(isinstance(p, (str, bytes)) for p in prompts)
    return isinstance(prompts, np.ndarray) and prompts.dtype.kind in "OSU"


def id_rows(prompts) -> list:
    """Token-id prompts (an int array, a list of lists, or a tf.RaggedTensor) as a list of rows."""
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


def pad_rows(rows: list, width: int, vocab_size: int, pad_token_id: int, what: str = "Prompt"):
    """Right-pads id rows into an int32 `[batch, width]` array, checking every id.

    Returns `(array, lengths)`; an empty row or an id outside the vocabulary is a
    `ValueError` naming the row.
    """
    if not rows:
        raise ValueError(f"No {what.lower()}s given.")
    lengths = np.array([len(r) for r in rows], "int32")
    if lengths.min() == 0:
        raise ValueError(f"{what} {int(np.argmin(lengths))} is empty; it needs at least one token.")
    array = np.full((len(rows), width), pad_token_id, "int32")
    for i, row in enumerate(rows):
        row = np.asarray(row)
        bad = row[(row < 0) | (row >= vocab_size)]
        if bad.size:
            raise ValueError(
                f"{what} {i} holds token id {bad[0]}, outside the vocabulary [0, {vocab_size})."
            )
        array[i, : len(row)] = row
    return array, lengths


def check_max_new_tokens(max_new_tokens) -> None:
    if int(max_new_tokens) != max_new_tokens or max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be a positive integer; got {max_new_tokens}.")


class GenerativeTask(Task):
    """A `Task` with a `tokenizer` (optional) and a cache of compiled decode loops.

    `generate_trace_count` counts how often a decode loop was traced (compiled),
    so callers and tests can see that repeated calls reuse one compilation.
    """

    def __init__(self, backbone: keras.Model, tokenizer=None, **kwargs):
        super().__init__(backbone, **kwargs)
        self.tokenizer = tokenizer
        # Compiled decode loops keyed by tuples: not model state, and SavedModel cannot save a
        # tracked dict with non-string keys, so keep Keras from tracking it.
        object.__setattr__(self, "_generate_functions", {})
        self.generate_trace_count = 0

    def loss_targets(self, x, y, y_pred, sample_weight) -> tuple:
        """`(labels, predictions, weights)` the loss and metrics compare; subclasses derive
        labels or padding weights from `x` here."""
        return y, y_pred, sample_weight

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        y, y_pred, sample_weight = self.loss_targets(x, y, y_pred, sample_weight)
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        y, y_pred, sample_weight = self.loss_targets(x, y, y_pred, sample_weight)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def compile(self, optimizer="adamw", loss="auto", metrics="auto", **kwargs):
        """Like `keras.Model.compile`; `"auto"` gives the token cross-entropy averaged over
        real (weight 1) tokens only, and a padding-aware `Perplexity`."""
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="mean_with_sample_weight"
            )
        if metrics == "auto":
            # Weighted, so that the padding mask (the sample weight) reaches it.
            metrics = None
            kwargs.setdefault("weighted_metrics", [Perplexity()])
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def tokenize_prompts(self, prompts) -> tuple[list, bool, bool]:
        """`(id rows, prompts were text, a single string)`."""
        if is_text(prompts):
            if self.tokenizer is None:
                raise ValueError(
                    f"String inputs need a tokenizer: build {type(self).__name__} with "
                    "`tokenizer=...`, or pass token ids."
                )
            single = isinstance(prompts, (str, bytes))
            rows = self.tokenizer([prompts] if single else list(prompts)).to_list()
            return rows, True, single
        return id_rows(prompts), False, False

    def detokenize(self, ids: list[int]) -> str:
        text = self.tokenizer.detokenize(np.array(ids, "int32"))
        text = ops.convert_to_numpy(text) if not isinstance(text, (str, bytes)) else text
        if isinstance(text, np.ndarray):
            text = text.item()
        # A sampled token can end mid-character; HF decodes with replacement too.
        return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text

    def decode_function(self, key: tuple, make_function: Callable[[], Callable], jit_compile: bool):
        """The compiled decode function for `key`, made by `make_function` on first use."""
        if not self.built:  # Weights must exist before compilation captures them.
            self.build(self.default_input_shape())
        key = (*key, jit_compile)
        if key not in self._generate_functions:
            function = make_function()

            def traced(*args):
                self.generate_trace_count += 1  # Runs once per trace, not per call.
                return function(*args)

            self._generate_functions[key] = compile_stateful(traced, self, jit_compile)
        return self._generate_functions[key]

    def quantize(self, mode=None, *args, **kwargs):
        """Like `keras.Model.quantize`, and the next `generate` compiles anew: quantizing swaps
        the layers' variables, which a decode loop compiled before still reads."""
        super().quantize(mode, *args, **kwargs)
        self._generate_functions.clear()

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
