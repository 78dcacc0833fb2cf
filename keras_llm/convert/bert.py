"""BERT checkpoints from local files: Hugging Face folders and Google's original TF checkpoints.

Both formats are first mapped to Hugging Face tensor names and layouts (linear
weights `[out, in]`), then one function assigns them to keras-llm layers.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from keras_llm.convert.checkpoint_files import (
    CheckpointError,
    WeightMap,
    read_hf_weights,
    read_json,
    read_tf_checkpoint,
)

if TYPE_CHECKING:
    from keras_llm.models import Bert
    from keras_llm.models.task import Task

_TaskT = TypeVar("_TaskT", bound="Task")

logger = logging.getLogger(__name__)

_REQUIRED_CONFIG_KEYS = (
    "vocab_size",
    "num_hidden_layers",
    "num_attention_heads",
    "hidden_size",
    "intermediate_size",
)
# Tensors that are buffers or duplicates, not parameters.
_IGNORED = re.compile(
    r"^(bert\.)?embeddings\.position_ids$|^cls\.predictions\.decoder\.(weight|bias)$"
)
# Head tensors a backbone-only load may skip.
_HEAD_PREFIXES = ("classifier.", "qa_outputs.", "cls.")


def _find_checkpoint_format(path: str) -> str:
    if not os.path.exists(path):
        raise CheckpointError(f"Checkpoint path does not exist: {path}.")
    if not os.path.isdir(path):
        raise CheckpointError(
            f"{path} is a file; pass the checkpoint's folder (with config.json or "
            "bert_config.json)."
        )
    if os.path.isfile(os.path.join(path, "config.json")):
        return "huggingface"
    if os.path.isfile(os.path.join(path, "bert_config.json")):
        return "google"
    raise CheckpointError(
        f"{path} holds neither config.json (Hugging Face) nor bert_config.json (Google "
        "BERT); it is not a BERT checkpoint folder."
    )


def read_bert_checkpoint(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The config and weights of a local BERT checkpoint, in Hugging Face naming.

    Returns `(config, weights)`: `config` holds `Bert` constructor arguments plus
    `num_labels`/`label_names` when the checkpoint knows them; `weights` maps
    names such as `encoder.layer.0.attention.self.query.weight` (no `bert.`
    prefix) to arrays in PyTorch layout.
    """
    checkpoint_format = _find_checkpoint_format(path)
    if checkpoint_format == "huggingface":
        config_path = os.path.join(path, "config.json")
        raw_config = read_json(config_path, _REQUIRED_CONFIG_KEYS)
        model_type = raw_config.get("model_type", "bert")
        if model_type != "bert":
            raise CheckpointError(
                f"{config_path} describes a {model_type!r} model; only BERT checkpoints "
                "load into keras_llm.models.Bert."
            )
        weights = read_hf_weights(path)
        # Task checkpoints prefix the encoder with "bert."; plain BertModel does not.
        weights = {name.removeprefix("bert."): value for name, value in weights.items()}
    else:
        config_path = os.path.join(path, "bert_config.json")
        raw_config = read_json(config_path, _REQUIRED_CONFIG_KEYS)
        weights = _google_to_hf(read_tf_checkpoint(_google_checkpoint_prefix(path)))
    return _bert_config(raw_config), weights


def _bert_config(raw: dict) -> dict:
    config = dict(
        vocab_size=raw["vocab_size"],
        num_layers=raw["num_hidden_layers"],
        num_heads=raw["num_attention_heads"],
        hidden_size=raw["hidden_size"],
        intermediate_size=raw["intermediate_size"],
        max_sequence_length=raw.get("max_position_embeddings", 512),
        type_vocab_size=raw.get("type_vocab_size", 2),
        hidden_act=raw.get("hidden_act", "gelu"),
        dropout=raw.get("hidden_dropout_prob", 0.1),
        attention_dropout=raw.get("attention_probs_dropout_prob", 0.1),
        layer_norm_epsilon=raw.get("layer_norm_eps", 1e-12),
        initializer_range=raw.get("initializer_range", 0.02),
    )
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(
            f"position_embedding_type={raw['position_embedding_type']!r} is not supported; "
            "keras_llm's BERT uses absolute learned positions."
        )
    id2label = raw.get("id2label")
    if id2label:
        labels = sorted(((int(i), name) for i, name in id2label.items()))
        config["label_names"] = [name for _, name in labels]
        config["num_labels"] = len(labels)
    elif "num_labels" in raw:
        config["num_labels"] = raw["num_labels"]
    return config


def _google_checkpoint_prefix(path: str) -> str:
    prefix = os.path.join(path, "bert_model.ckpt")
    if os.path.isfile(prefix + ".index"):
        return prefix
    candidates = sorted(f[: -len(".index")] for f in os.listdir(path) if f.endswith(".index"))
    if len(candidates) == 1:
        return os.path.join(path, candidates[0])
    raise CheckpointError(
        f"{path} has bert_config.json but no single TF checkpoint (bert_model.ckpt.index "
        f"and .data-*); found {candidates or 'none'}."
    )


_GOOGLE_RENAMES = [
    (r"^bert/", ""),
    (r"^cls/squad/output_weights$", "qa_outputs.weight"),
    (r"^cls/squad/output_bias$", "qa_outputs.bias"),
    (r"^output_weights$", "classifier.weight"),
    (r"^output_bias$", "classifier.bias"),
    (r"^cls/seq_relationship/output_weights$", "cls.seq_relationship.weight"),
    (r"^cls/seq_relationship/output_bias$", "cls.seq_relationship.bias"),
    (r"^cls/predictions/output_bias$", "cls.predictions.bias"),
    (r"/layer_(\d+)/", r"/layer.\1/"),
    (r"embeddings/word_embeddings$", "embeddings/word_embeddings/weight"),
    (r"embeddings/token_type_embeddings$", "embeddings/token_type_embeddings/weight"),
    (r"embeddings/position_embeddings$", "embeddings/position_embeddings/weight"),
    (r"/gamma$", "/weight"),
    (r"/beta$", "/bias"),
    (r"/kernel$", "/weight"),
]
# Optimizer slots and counters that Google's training scripts store beside the weights.
_GOOGLE_SKIP = re.compile(r"(^|/)(adam_m|adam_v)$|^global_step$|^good_steps$|^loss_scale$")


def _google_to_hf(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    weights = {}
    for name, value in variables.items():
        if _GOOGLE_SKIP.search(name):
            continue
        new_name = name
        for pattern, replacement in _GOOGLE_RENAMES:
            new_name = re.sub(pattern, replacement, new_name)
        new_name = new_name.replace("/", ".")
        # TF dense kernels are [in, out]; PyTorch linear weights are [out, in].
        if name.endswith("/kernel"):
            value = value.T
        weights[new_name] = value
    return weights


def _assign_backbone(bert, weights: WeightMap) -> None:
    embeddings = bert.embeddings
    for layer, name in (
        (embeddings.token_embedding, "embeddings.word_embeddings.weight"),
        (embeddings.position_embedding, "embeddings.position_embeddings.weight"),
        (embeddings.segment_embedding, "embeddings.token_type_embeddings.weight"),
    ):
        weights.assign(layer.embeddings, weights.take(name), name)
    weights.layer_norm(embeddings.layer_norm, "embeddings.LayerNorm")
    for i, block in enumerate(bert.encoder_blocks):
        prefix = f"encoder.layer.{i}"
        attention = block.attention
        # One fused projection: the query, key and value columns side by side.
        parts = [f"{prefix}.attention.self.{part}" for part in ("query", "key", "value")]
        kernel = np.concatenate([weights.take(f"{p}.weight").T for p in parts], axis=1)
        bias = np.concatenate([weights.take(f"{p}.bias") for p in parts])
        weights.kernel(attention.qkv_dense, kernel, f"{prefix}.attention.self.*.weight")
        weights.assign(attention.qkv_dense.bias, bias, f"{prefix}.attention.self.*.bias")
        weights.dense(attention.output_dense, f"{prefix}.attention.output.dense")
        weights.layer_norm(block.attention_norm, f"{prefix}.attention.output.LayerNorm")
        ffn = block.feed_forward
        weights.dense(ffn.intermediate_dense, f"{prefix}.intermediate.dense")
        weights.dense(ffn.output_dense, f"{prefix}.output.dense")
        weights.layer_norm(block.feed_forward_norm, f"{prefix}.output.LayerNorm")
    if "pooler.dense.weight" in weights:
        weights.dense(bert.pooler, "pooler.dense")
    else:
        # HF saves no pooler for masked-LM and token-classification models.
        logger.warning("%s has no pooler weights; the pooler stays randomly initialised.",
                       weights.source)


def _check_unused(weights: WeightMap, allowed_prefixes=()) -> None:
    unused = weights.unused(
        lambda name: bool(_IGNORED.match(name)) or name.startswith(allowed_prefixes)
    )
    if unused:
        shown = ", ".join(unused[:10]) + (" ..." if len(unused) > 10 else "")
        raise CheckpointError(
            f"{len(unused)} tensors in {weights.source} match no layer of the model: "
            f"{shown}. The checkpoint is not a BERT of this architecture."
        )


def _build_bert(config: dict, overrides: dict):
    from keras_llm.models import Bert
    from keras_llm.models.backbone import override_config

    bert_args = {k: v for k, v in config.items() if k not in ("num_labels", "label_names")}
    bert = Bert(**override_config(bert_args, overrides))
    bert.build({"token_ids": (None, None)})
    return bert


def load_bert_backbone(path: str, **overrides: Any) -> Bert:
    """A `Bert` with the encoder and pooler weights of a local checkpoint.

    Head tensors (`classifier.*`, `qa_outputs.*`, `cls.*`) are skipped; any
    other tensor the model has no place for is an error.
    """
    config, raw_weights = read_bert_checkpoint(path)
    weights = WeightMap(raw_weights, path)
    bert = _build_bert(config, overrides)
    _assign_backbone(bert, weights)
    _check_unused(weights, _HEAD_PREFIXES)
    return bert


def load_bert_task(task_class: type[_TaskT], path: str, **kwargs: Any) -> _TaskT:
    """A BERT task model with backbone and, when the checkpoint has them, head weights.

    `kwargs` go to the task's constructor (e.g. `num_classes`); `dtype` and
    `dropout`-like backbone overrides go in `backbone_kwargs`.
    """
    from keras_llm.models import (
        BertClassifier,
        BertPretrainer,
        BertQuestionAnswerer,
        BertTokenClassifier,
    )

    config, raw_weights = read_bert_checkpoint(path)
    weights = WeightMap(raw_weights, path)
    bert = _build_bert(config, kwargs.pop("backbone_kwargs", {}))
    _assign_backbone(bert, weights)

    if task_class in (BertClassifier, BertTokenClassifier):
        if "num_classes" not in kwargs:
            if "classifier.weight" in weights:
                kwargs["num_classes"] = weights.weights["classifier.weight"].shape[0]
            elif "num_labels" in config:
                kwargs["num_classes"] = config["num_labels"]
            else:
                raise ValueError(
                    f"{path} does not say how many labels its head has; pass num_classes."
                )
        label_names = config.get("label_names")
        if "label_names" not in kwargs and label_names and len(label_names) == kwargs[
            "num_classes"
        ] and not all(re.fullmatch(r"LABEL_\d+", n) for n in label_names):
            kwargs["label_names"] = label_names
    task = task_class(bert, **kwargs)
    task.build({"token_ids": (None, None)})

    head_prefix = {
        BertClassifier: "classifier.",
        BertTokenClassifier: "classifier.",
        BertQuestionAnswerer: "qa_outputs.",
        BertPretrainer: "cls.",
    }.get(task_class)
    if head_prefix is None:
        raise TypeError(f"{task_class.__name__} is not a BERT task model.")
    head_names = [n for n in weights.weights if n.startswith(head_prefix) and not _IGNORED.match(n)]
    if head_names:
        _assign_head(task, weights)
    else:
        logger.info("%s has no %s* head; it starts randomly initialised.", path, head_prefix)
    _check_unused(weights, tuple(p for p in _HEAD_PREFIXES if p != head_prefix))
    return task


def _assign_head(task, weights: WeightMap) -> None:
    from keras_llm.models import BertPretrainer, BertQuestionAnswerer

    if isinstance(task, BertQuestionAnswerer):
        weights.dense(task.qa_outputs, "qa_outputs")
    elif isinstance(task, BertPretrainer):
        head = task.masked_lm_head
        weights.dense(head.transform, "cls.predictions.transform.dense")
        weights.layer_norm(head.layer_norm, "cls.predictions.transform.LayerNorm")
        weights.assign(head.output_bias, weights.take("cls.predictions.bias"),
                       "cls.predictions.bias")
        if "cls.seq_relationship.weight" in weights:
            weights.dense(task.next_sentence_head, "cls.seq_relationship")
        else:  # A masked-LM-only checkpoint (HF BertForMaskedLM).
            logger.warning("%s has no next-sentence head; it stays randomly initialised.",
                           weights.source)
    else:
        weights.dense(task.classifier, "classifier")
