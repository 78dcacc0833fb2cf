"""Reading checkpoint files from local disk, with errors that name the file and the fix.

Every reader returns plain numpy arrays keyed by the checkpoint's own names; the
per-model converters map those names onto keras-llm layers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np

from keras_llm.layers.dense import kernel_is_output_major


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the model.

    Every converter raises it with the path and what to fix, before any weight
    is assigned.

    Example:
    >>> try:
    ...     read_json("/no/such/model/config.json")
    ... except CheckpointError as error:
    ...     print(error)
    Config file not found: /no/such/model/config.json.
    """


def read_json(path: str, required_keys: Iterable[str] = ()) -> dict:
    """Reads a JSON config, checking that `required_keys` are present."""
    if not os.path.isfile(path):
        raise CheckpointError(f"Config file not found: {path}.")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"Config file {path} is not valid JSON: {error}.") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"Config file {path} must hold a JSON object.")
    missing = [key for key in required_keys if key not in config]
    if missing:
        raise CheckpointError(f"Config file {path} lacks the required keys {missing}.")
    return config


def read_hf_weights(directory: str) -> dict[str, np.ndarray]:
    """All tensors of a Hugging Face model folder, as numpy arrays.

    Reads `model.safetensors`, a sharded `model.safetensors.index.json`, or (with
    PyTorch installed) `pytorch_model.bin`.
    """
    safetensors_path = os.path.join(directory, "model.safetensors")
    index_path = os.path.join(directory, "model.safetensors.index.json")
    torch_path = os.path.join(directory, "pytorch_model.bin")
    if os.path.isfile(safetensors_path):
        return _read_safetensors(safetensors_path)
    if os.path.isfile(index_path):
        shards = sorted(set(read_json(index_path, ["weight_map"])["weight_map"].values()))
        weights = {}
        for shard in shards:
            weights.update(_read_safetensors(os.path.join(directory, shard)))
        return weights
    if os.path.isfile(torch_path):
        return _read_torch_bin(torch_path)
    raise CheckpointError(
        f"No weights found in {directory}: expected model.safetensors, "
        "model.safetensors.index.json or pytorch_model.bin."
    )


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not os.path.isfile(path):
        raise CheckpointError(f"Weights file not found: {path}.")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"Could not read {path} as safetensors ({error}); the file is corrupt or "
            "truncated. Copy it again from its source."
        ) from error
    except TypeError as error:  # bfloat16 tensors have no numpy dtype.
        raise CheckpointError(
            f"{path} holds a dtype numpy cannot read ({error}); save it in float32 or "
            "float16."
        ) from error


def _read_torch_bin(path: str) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as error:
        raise CheckpointError(
            f"{path} is a PyTorch pickle; reading it needs `pip install torch`, or save "
            "the model with safetensors (`save_pretrained(safe_serialization=True)`)."
        ) from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"Could not read {path} with torch.load: {error}.") from error
    return {name: tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
            for name, tensor in state.items()}


def read_tf_checkpoint(prefix: str) -> dict[str, np.ndarray]:
    """All variables of a TF1/TF2 checkpoint (`prefix.index` + `prefix.data-*`)."""
    import tensorflow as tf

    if not os.path.isfile(prefix + ".index"):
        raise CheckpointError(
            f"TF checkpoint {prefix}.index not found; pass the folder holding "
            "bert_model.ckpt.index and bert_model.ckpt.data-*."
        )
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = reader.get_variable_to_shape_map()
        return {name: reader.get_tensor(name) for name in names}
    except (tf.errors.OpError, ValueError) as error:
        raise CheckpointError(f"Could not read TF checkpoint {prefix}: {error}.") from error


class WeightMap:
    """Hands out checkpoint tensors by name, checking shapes and remembering what was used.

    After loading, `unused()` lists the tensors no layer took, so a converter can
    reject checkpoints that do not match the model instead of ignoring weights.
    """

    def __init__(self, weights: dict[str, np.ndarray], source: str):
        self.weights = weights
        self.source = source
        self.used: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self.weights

    def take(self, name: str) -> np.ndarray:
        if name not in self.weights:
            raise CheckpointError(f"Checkpoint {self.source} lacks the tensor {name!r}.")
        self.used.add(name)
        return self.weights[name]

    def assign(self, variable, value: np.ndarray, name: str) -> None:
        """Assigns `value` to a Keras variable, naming the tensor if shapes differ."""
        expected = tuple(variable.shape)
        if tuple(value.shape) != expected:
            raise CheckpointError(
                f"Tensor {name!r} in {self.source} has shape {tuple(value.shape)} but the "
                f"model's {variable.path} has shape {expected}; the checkpoint does not "
                "match this model's config."
            )
        variable.assign(value.astype(np.float32) if value.dtype != np.float32 else value)

    def dense(self, layer, name: str, transpose: bool = True) -> None:
        """Loads `name.weight`/`name.bias` into a dense layer.

        PyTorch `nn.Linear` stores `[out, in]` (`transpose=True`); HF's GPT-2 `Conv1D`
        stores `[in, out]`. The layer holds `[in, out]` (`keras.layers.Dense`) or
        `[out, in]` (`OutputMajorDense`).
        """
        kernel = self.take(f"{name}.weight")
        self.kernel(layer, kernel.T if transpose else kernel, f"{name}.weight")
        if getattr(layer, "bias", None) is not None:
            self.assign(layer.bias, self.take(f"{name}.bias"), f"{name}.bias")

    def kernel(self, layer, in_out: np.ndarray, name: str) -> None:
        """Assigns an `[in, out]` matrix to a dense layer's kernel, in the layer's layout."""
        self.assign(layer.kernel, in_out.T if kernel_is_output_major(layer) else in_out, name)

    def layer_norm(self, layer, name: str) -> None:
        """Loads `name.weight`/`name.bias` into a LayerNormalization's gamma/beta."""
        self.assign(layer.gamma, self.take(f"{name}.weight"), f"{name}.weight")
        self.assign(layer.beta, self.take(f"{name}.bias"), f"{name}.bias")

    def unused(self, ignore=lambda name: False) -> list[str]:
        return sorted(n for n in self.weights if n not in self.used and not ignore(n))
