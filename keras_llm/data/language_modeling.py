"""Plain text to fixed-length blocks of token ids for causal language modelling."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from keras_llm.tokenizers.string_tokenizer import StringTokenizer


def read_text_file(path: str | Path) -> str:
    """The whole file as text; a clear error for a missing, empty or non-UTF-8 file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Text file not found: {path}.")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not valid UTF-8 (byte {error.start}: {data[error.start:error.start + 4]!r})"
            "; convert it first, e.g. `iconv -f latin1 -t utf-8`."
        ) from None
    if not text.strip():
        raise ValueError(f"{path} holds no text.")
    return text


def tokenize_text(text: str, tokenizer: StringTokenizer,
                  chunk_characters: int = 20_000) -> np.ndarray:
    """Token ids of a long text, tokenized in batches of line-aligned chunks.

    Chunks end at a newline, where GPT-2's pre-tokenizer splits anyway, so the
    ids equal tokenizing the whole text at once up to those boundaries.
    """
    chunks, start = [], 0
    while start < len(text):
        end = min(start + chunk_characters, len(text))
        if end < len(text):
            newline = text.rfind("\n", start, end)
            end = newline + 1 if newline > start else end
        chunks.append(text[start:end])
        start = end
    ids = tokenizer(chunks)
    return np.concatenate([np.asarray(row, "int32") for row in ids.to_list()])


def pack_blocks(
    token_ids: np.ndarray, sequence_length: int, stride: int | None = None
) -> np.ndarray:
    """Cuts a token stream into `[num_blocks, sequence_length]` windows every `stride` tokens.

    The model learns to predict tokens 1..L-1 of each block from the ones before.
    """
    stride = stride or sequence_length
    if len(token_ids) < sequence_length:
        raise ValueError(
            f"{len(token_ids)} tokens are fewer than one block of {sequence_length}; use a "
            "longer text or a shorter sequence_length."
        )
    starts = np.arange(0, len(token_ids) - sequence_length + 1, stride)
    return np.stack([token_ids[s : s + sequence_length] for s in starts]).astype("int32")


def unigram_cross_entropy(train_ids: np.ndarray, eval_ids: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of `eval_ids` under the add-one-smoothed unigram
    distribution of `train_ids`: the loss a model that ignores context would reach."""
    counts = np.bincount(train_ids, minlength=vocab_size).astype("float64") + 1.0
    log_probs = np.log(counts / counts.sum())
    return float(-log_probs[eval_ids].mean())
