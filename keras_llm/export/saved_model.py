"""`export_saved_model`: a keras-llm model + its in-graph tokenizer -> a TF Serving version folder.

The folder follows TF Serving's layout, `export_dir/<version>/{saved_model.pb, variables/,
assets.extra/}`, and loads with TensorFlow and tensorflow-text alone (no keras-llm, no Keras).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_llm.export import signatures as sig
from keras_llm.models import (
    Bert,
    BertClassifier,
    BertContrastive,
    BertQuestionAnswerer,
    BertTokenClassifier,
    GptCausalLM,
    T5Seq2SeqLM,
)
from keras_llm.tokenizers import (
    BertPreprocessor,
    BytePairTokenizer,
    ByteTokenizer,
    SentencePieceTokenizer,
    WordPieceTokenizer,
)

#: Signature key of the string-input signature (what TF Serving calls by default).
DEFAULT_SIGNATURE = "serving_default"
#: Signature key of the token-id signature.
TOKEN_IDS_SIGNATURE = "token_ids"
#: Name of the TF Serving warmup file inside `assets.extra/`.
WARMUP_FILE = "tf_serving_warmup_requests"
#: A description of the export (model class, signatures, limits) inside `assets.extra/`.
METADATA_FILE = "keras_llm_export.json"

logger = logging.getLogger(__name__)

_SIGNATURE_KINDS = ("text", "token_ids")


class ExportError(ValueError):
    """The model, preprocessor or destination cannot be exported; nothing was written.

    Example:
    >>> import keras_llm
    >>> bert = keras_llm.models.Bert.from_preset("bert_tiny")  # Never called: no weights.
    >>> try:
    ...     export_saved_model(bert, "/tmp/unused")
    ... except ExportError as error:
    ...     print(error)
    The Bert was never built, so it has no weights to export. Call it on a batch ...
    """


def export_saved_model(
    model: keras.Model,
    export_dir: str | os.PathLike,
    preprocessor: Any = None,
    version: int | None = None,
    signatures: Sequence[str] = ("text", "token_ids"),
    warmup_examples: Iterable[str | dict] | None = None,
    *,
    pair: bool = False,
    max_new_tokens: int = 64,
    max_prompt_length: int | None = None,
    strategy: str = "greedy",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    jit_compile: bool = False,
) -> str:
    """Exports `model` (and its tokenizer) as a SavedModel version folder for TF Serving.

    Signatures (method `tensorflow/serving/predict`, batch size dynamic):

    - `"text"` becomes `serving_default`: raw `tf.string [batch]` inputs, tokenized in the
      graph (needs `preprocessor`, or a `GptCausalLM` built with a tokenizer);
    - `"token_ids"` becomes `token_ids` (or `serving_default` when it is the only one):
      int32 `token_ids`, `segment_ids`, `padding_mask` `[batch, seq]` for BERT models;
      `token_ids` `[batch, seq]` (right-padded), `prompt_lengths` `[batch]` and
      `max_new_tokens` for `GptCausalLM`.

    Inputs and outputs per model (see `examples/serving/README.md` for the full table):

    - `BertClassifier`: `text` (and `text_pair` with `pair=True`) -> `logits`,
      `probabilities`, `label_ids`, `label_names` (when `model.label_names` is set);
      regression (`num_classes=1`) -> `logits`, `predictions`.
    - `BertQuestionAnswerer`: `question`, `context` -> `start_logits`, `end_logits`,
      `answer_text` (the best span's word pieces, detokenized), `answer_score`
      (start + end logit), `answer_start` / `answer_end` (token positions; -1 when the
      context is empty).
    - `BertTokenClassifier`: `text` -> `logits`, `label_ids`, `label_names`, `tokens`
      (the word pieces, `""` at padding).
    - `Bert` backbone: `text` -> `embedding`, the L2-normalised mean of `sequence_output`
      over real tokens (sentence-transformers' recipe).
    - `GptCausalLM`: `prompt`, `max_new_tokens` (int32 scalar, at most the export-time
      `max_new_tokens`) and, for a random `strategy`, `seed` -> `generated_text` (prompt and
      continuation, cut at the end-of-text token), `generated_token_ids`
      `[batch, longest prompt + max_new_tokens]` (padded with the end-of-text id) and
      `generated_lengths`.

    Args:
        model: a built `BertClassifier`, `BertQuestionAnswerer`, `BertTokenClassifier`,
            `Bert` or `GptCausalLM`.
        export_dir: the model's base folder (what TF Serving's `--model_base_path` names).
        preprocessor: a `BertPreprocessor` (or a `WordPieceTokenizer`, packed to 128 tokens
            or the model's positions if fewer) for BERT models; a `BytePairTokenizer` for
            GPT (default: `model.tokenizer`).
        version: the version folder's number; `None` takes the largest existing one plus 1
            (1 in an empty folder). An existing version is never overwritten.
        signatures: any of `"text"` and `"token_ids"`. Without a preprocessor, `"text"` is
            left out.
        warmup_examples: strings (for the first string input) or dicts of input name ->
            value; written to `assets.extra/tf_serving_warmup_requests` as `PredictionLog`s
            after a test run through the signature.
        pair: `BertClassifier` only: take `text` and `text_pair`.
        max_new_tokens: `GptCausalLM` only: the largest `max_new_tokens` a request may ask.
        max_prompt_length: `GptCausalLM` only: prompt tokens kept (the last ones); default
            the model's positions minus `max_new_tokens`.
        strategy, temperature, top_k, top_p: `GptCausalLM` only: decoding, fixed at export
            (`"greedy"`, `"random"`, `"top_k"`, `"top_p"`); random ones add a `seed` input.
        jit_compile: `GptCausalLM` only: compile the decode loop with XLA. TF Serving's CPU
            server runs it only with `--xla_cpu_compilation_enabled=true`, so it is off by
            default.

    Returns:
        The version folder, e.g. `export_dir/1`.

    Raises:
        ExportError: unsupported or unbuilt model, a vocabulary larger than the embedding,
            an existing version folder: before anything is written.

    Example:
    >>> import tempfile, keras_llm
    >>> from keras_llm.export import export_saved_model
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad"]
    >>> pre = keras_llm.tokenizers.BertPreprocessor(
    ...     keras_llm.tokenizers.WordPieceTokenizer(vocab), sequence_length=8)
    >>> bert = keras_llm.models.Bert(vocab_size=6, num_layers=1, num_heads=1, hidden_size=8,
    ...                              intermediate_size=8, max_sequence_length=8)
    >>> clf = keras_llm.models.BertClassifier(bert, num_classes=2, label_names=["neg", "pos"])
    >>> _ = clf({"token_ids": pre(["good"])["token_ids"]})
    >>> path = export_saved_model(clf, tempfile.mkdtemp(), pre)
    >>> os.path.basename(path)
    '1'
    """
    signatures = tuple(signatures)
    unknown = set(signatures) - set(_SIGNATURE_KINDS)
    if unknown or not signatures:
        raise ExportError(
            f"signatures must be a non-empty subset of {_SIGNATURE_KINDS}; got {signatures}.")
    preprocessor = _check_model_and_preprocessor(model, preprocessor)
    if preprocessor is None and "text" in signatures:
        signatures = tuple(s for s in signatures if s != "text")
        needs = ("The `text` signature needs a preprocessor (a BertPreprocessor or "
                 "WordPieceTokenizer for BERT, a BytePairTokenizer for GPT, a "
                 "SentencePieceTokenizer for T5)")
        if not signatures:
            raise ExportError(needs + ".")
        logger.warning("%s; exporting the %s signature(s) only.", needs, ", ".join(signatures))
    export_dir = os.fspath(export_dir)
    version_dir = _version_dir(export_dir, version)

    functions = _signature_functions(
        model, preprocessor, pair=pair, max_new_tokens=max_new_tokens,
        max_prompt_length=max_prompt_length, strategy=strategy, temperature=temperature,
        top_k=top_k, top_p=top_p, jit_compile=jit_compile)
    functions = {k: v for k, v in functions.items() if k in signatures}

    archive = keras.export.ExportArchive()
    archive.track(model)
    if preprocessor is not None and preprocessor is not model:
        archive.track(preprocessor)
    endpoints = {}
    # The string signature first: ExportArchive aliases the first endpoint as serving_default.
    for kind in ("text", "token_ids"):
        if kind not in functions:
            continue
        fn, specs = functions[kind]
        name = DEFAULT_SIGNATURE if kind == "text" else TOKEN_IDS_SIGNATURE
        endpoints[name] = (archive.add_endpoint(name, fn, input_signature=specs), specs)

    requests = []
    if warmup_examples is not None:
        fn, specs = endpoints.get(DEFAULT_SIGNATURE) or endpoints[TOKEN_IDS_SIGNATURE]
        requests = _warmup_requests(list(warmup_examples), specs, max_new_tokens)
        for request in requests:  # A bad example fails here, before anything is written.
            fn(**{name: tf.make_ndarray(proto) for name, proto in request.inputs.items()})

    os.makedirs(export_dir, exist_ok=True)
    # Written aside and renamed: TF Serving polls the base folder and must never load a
    # half-written version (names that are not numbers are ignored by it).
    staging = tempfile.mkdtemp(prefix=".staging-", dir=export_dir)
    try:
        archive.write_out(staging, verbose=False)
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        if requests:
            _write_warmup(os.path.join(extra, WARMUP_FILE), requests)
        with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(_metadata(model, endpoints, max_new_tokens, strategy, preprocessor), f,
                      indent=2)
        if os.path.exists(version_dir):  # Created by someone else meanwhile.
            raise ExportError(f"Version folder {version_dir} already exists; not overwriting.")
        os.rename(staging, version_dir)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return version_dir


def next_version(export_dir: str | os.PathLike) -> int:
    """The largest integer-named folder in `export_dir` plus one (1 when there is none)."""
    export_dir = os.fspath(export_dir)
    if not os.path.isdir(export_dir):
        return 1
    versions = [int(n) for n in os.listdir(export_dir)
                if re.fullmatch(r"\d+", n) and os.path.isdir(os.path.join(export_dir, n))]
    return max(versions, default=0) + 1


def _version_dir(export_dir: str, version: int | None) -> str:
    if version is None:
        version = next_version(export_dir)
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ExportError(f"version must be a non-negative integer; got {version!r}.")
    path = os.path.join(export_dir, str(int(version)))
    if os.path.exists(path):
        raise ExportError(
            f"Version folder {path} already exists; TF Serving versions are immutable. Pass "
            f"another version (`version=`, or the CLI's --version), or none for the next one "
            f"({next_version(export_dir)})."
        )
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ExportError(f"export_dir {export_dir} exists and is not a folder.")
    return path


def _check_model_and_preprocessor(model, preprocessor):
    supported = (BertClassifier, BertQuestionAnswerer, BertTokenClassifier, BertContrastive, Bert,
                 GptCausalLM, T5Seq2SeqLM)
    if not isinstance(model, supported):
        raise ExportError(
            f"Cannot export a {type(model).__name__}; supported: "
            + ", ".join(c.__name__ for c in supported) + ".")
    if not model.built:
        raise ExportError(
            f"The {type(model).__name__} was never built, so it has no weights to export. Call "
            "it on a batch (or load a trained .keras file) first.")
    backbone = model if isinstance(model, Bert) else model.backbone
    if isinstance(model, GptCausalLM):
        preprocessor = preprocessor if preprocessor is not None else model.tokenizer
        if preprocessor is not None and not isinstance(
                preprocessor, (BytePairTokenizer, ByteTokenizer)):
            raise ExportError(
                f"A GptCausalLM is exported with a BytePairTokenizer or a ByteTokenizer; got "
                f"{type(preprocessor).__name__}.")
        if preprocessor is not None:
            _check_vocabulary(preprocessor.vocabulary_size(), backbone.vocab_size)
            preprocessor(["warm up"])  # Builds whatever the tokenizer creates lazily.
        return preprocessor
    if isinstance(model, T5Seq2SeqLM):
        preprocessor = preprocessor if preprocessor is not None else model.tokenizer
        if preprocessor is not None and not isinstance(preprocessor, SentencePieceTokenizer):
            raise ExportError(
                f"A T5Seq2SeqLM is exported with a SentencePieceTokenizer; got "
                f"{type(preprocessor).__name__}.")
        if preprocessor is not None:
            _check_vocabulary(preprocessor.vocabulary_size(), backbone.vocab_size)
            preprocessor(["warm up"])
        return preprocessor
    if preprocessor is None:
        return None
    if isinstance(preprocessor, WordPieceTokenizer):
        preprocessor = BertPreprocessor(
            preprocessor, sequence_length=min(128, backbone.max_sequence_length))
    if not isinstance(preprocessor, BertPreprocessor):
        raise ExportError(
            "BERT models are exported with a BertPreprocessor or a WordPieceTokenizer; got "
            f"{type(preprocessor).__name__}.")
    _check_vocabulary(preprocessor.tokenizer.vocabulary_size(), backbone.vocab_size)
    if preprocessor.sequence_length > backbone.max_sequence_length:
        raise ExportError(
            f"The preprocessor packs {preprocessor.sequence_length} tokens but the model has "
            f"{backbone.max_sequence_length} positions; use sequence_length <= "
            f"{backbone.max_sequence_length}.")
    preprocessor(["warm up"])
    return preprocessor


def _check_vocabulary(tokenizer_size: int, embedding_rows: int) -> None:
    if tokenizer_size > embedding_rows:
        raise ExportError(
            f"The tokenizer's vocabulary has {tokenizer_size} ids but the model's token "
            f"embedding has {embedding_rows} rows: ids past {embedding_rows - 1} would index "
            "out of range. Use the tokenizer the model was trained with.")


def _signature_functions(model, preprocessor, **options) -> dict:
    if isinstance(model, GptCausalLM):
        keys = ("max_new_tokens", "max_prompt_length", "strategy", "temperature", "top_k",
                "top_p", "jit_compile")
        return sig.causal_lm_signatures(model, preprocessor, **{k: options[k] for k in keys})
    if isinstance(model, T5Seq2SeqLM):
        keys = ("max_new_tokens", "strategy", "temperature", "top_k", "top_p", "jit_compile")
        return sig.seq2seq_lm_signatures(model, preprocessor, **{k: options[k] for k in keys})
    if isinstance(model, BertClassifier):
        return sig.classifier_signatures(model, preprocessor, pair=options["pair"])
    if isinstance(model, BertQuestionAnswerer):
        return sig.question_answerer_signatures(model, preprocessor)
    if isinstance(model, BertTokenClassifier):
        return sig.token_classifier_signatures(model, preprocessor)
    return sig.embedding_signatures(model, preprocessor)


def _warmup_requests(examples: list, specs: list, max_new_tokens: int) -> list:
    """One `PredictRequest` per example (batch 1), plus one with all of them."""
    from keras_llm.export.client import make_predict_request

    if not examples:
        return []
    strings = [s.name for s in specs if s.dtype == tf.string]
    scalars = {s.name: min(4, max_new_tokens) if s.name == "max_new_tokens" else 0
               for s in specs if s.shape.rank == 0}
    rows = []
    for example in examples:
        if isinstance(example, (str, bytes)):
            if not strings:
                raise ExportError("String warmup examples need a string-input signature.")
            example = {strings[0]: example}
        if not isinstance(example, dict):
            raise ExportError(f"A warmup example must be a string or a dict; got {example!r}.")
        missing = {s.name for s in specs} - set(example) - set(scalars)
        if missing:
            raise ExportError(f"Warmup example {example!r} lacks inputs {sorted(missing)}.")
        rows.append(example)
    batches = [[row] for row in rows] + ([rows] if len(rows) > 1 else [])
    requests = []
    for batch in batches:
        inputs = {}
        for spec in specs:
            if spec.name in scalars:
                inputs[spec.name] = np.asarray(batch[0].get(spec.name, scalars[spec.name]),
                                               spec.dtype.as_numpy_dtype)
            else:
                inputs[spec.name] = [row[spec.name] for row in batch]
        requests.append(make_predict_request(inputs, signature_name=DEFAULT_SIGNATURE
                                             if strings else TOKEN_IDS_SIGNATURE))
    return requests


def _write_warmup(path: str, requests: list) -> None:
    from tensorflow_serving.apis import prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _metadata(model, endpoints, max_new_tokens, strategy, preprocessor) -> dict:
    from keras_llm.version import __version__

    described = {}
    for name, (_, specs) in endpoints.items():
        described[name] = {s.name: {"dtype": s.dtype.name, "shape": s.shape.as_list()}
                           for s in specs}
    metadata = {"keras_llm_version": __version__, "model_class": type(model).__name__,
                "signatures": described}
    if isinstance(model, (GptCausalLM, T5Seq2SeqLM)):
        metadata.update({"max_new_tokens": max_new_tokens, "strategy": strategy})
    elif isinstance(preprocessor, BertPreprocessor):
        metadata["sequence_length"] = preprocessor.sequence_length
    return metadata
