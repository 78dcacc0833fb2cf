"""The base of every backbone: presets and a config that round-trips with its dtype policy."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import keras

from keras_llm.models.layout import get_layout_map
from keras_llm.models.presets import get_preset

# A backend tensor, a NumPy array or anything `keras.ops` converts.
Tensor = Any


def override_config(config: dict, overrides: dict) -> dict:
    """`config` with `overrides` applied; a new `dropout` also sets `attention_dropout`.

    A checkpoint's config names both rates (Hugging Face keeps them apart), but
    `from_pretrained(path, dropout=0.0)` must still turn every dropout off: the
    attention rate follows an overridden `dropout` unless it is overridden too.
    """
    merged = {**config, **overrides}
    if "dropout" in overrides and "attention_dropout" not in overrides:
        if "attention_dropout" in config:
            merged["attention_dropout"] = overrides["dropout"]
    return merged


def base_dtype_policy(model: keras.Model) -> keras.DTypePolicy:
    """`model`'s own (unquantized) policy, also when it holds a `DTypePolicyMap`."""
    policy = model.dtype_policy
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
        return policy.default_policy
    return policy


def quantized_policy_map(
    model: keras.Model, exclude: Iterable[keras.layers.Layer] = ()
) -> keras.dtype_policies.DTypePolicyMap | None:
    """The dtype policies of `model`'s quantized sublayers, for its config; `None` if none.

    `model.quantize("int8")` swaps the policy of each quantized `Dense`/`Embedding`,
    but our blocks create those sublayers from their parent's policy, so a model
    rebuilt from its config would be float and could not load the int8 weights.
    Passed back as the model's `dtype`, this map reaches every sublayer, and each
    one looks its own path up when it is built, so it is built quantized.

    Layer paths depend on how a model was built (`bert/...` for a backbone built
    alone, `bert_classifier/bert/...` for one built inside its task), so every key
    is a pattern matching the layer's path below `model` under any prefix. A model
    made from such a map keeps its entries, so its config round-trips unbuilt too.

    Args:
        model: a model, possibly quantized.
        exclude: sublayers whose config is saved elsewhere (a task's backbone).
    """
    excluded = {id(layer) for layer in exclude}
    policy_map = keras.dtype_policies.DTypePolicyMap(default_policy=base_dtype_policy(model))
    if isinstance(model.dtype_policy, keras.dtype_policies.DTypePolicyMap):
        for key, policy in model.dtype_policy.items():
            policy_map[key] = policy
    root = model.path or model.name
    for layer in model._flatten_layers(include_self=False):
        if id(layer) in excluded or layer.quantization_mode is None or not layer.path:
            continue
        policy = layer.dtype_policy
        if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
            policy = policy[layer.path]
        relative = layer.path.removeprefix(root + "/")
        key = "(?:.+/)?" + re.escape(f"{model.name}/{relative}")
        if key not in policy_map:
            policy_map[key] = policy
    return policy_map if len(policy_map) else None


def resolve_quantized_policies(model: keras.Model) -> None:
    """Gives each sublayer built quantized from a `DTypePolicyMap` its own policy.

    A model made from `quantized_policy_map`'s map builds int8 layers that still
    hold the whole map. Keras' `Dense`/`Embedding` read `dtype_policy.quantization_mode`
    when saving their variables, which on a map is the float default, so saving the
    loaded model again would fail; with its own policy each layer is in the state
    `quantize` leaves it in. Called at the end of every `build`; a no-op for float models.
    """
    for layer in model._flatten_layers(include_self=False):
        policy = layer.dtype_policy
        if isinstance(policy, keras.dtype_policies.DTypePolicyMap) and layer.path:
            own = policy[layer.path]
            if own.quantization_mode is not None:
                layer._dtype_policy = own


class Backbone(keras.Model):
    """A `keras.Model` built from constructor arguments that `get_config` lists.

    Subclasses set `preset_family` (the name their presets are registered
    under) and return `{**self.base_config(), <their arguments>}` from
    `get_config`.
    """

    preset_family: str = ""

    def base_config(self) -> dict:
        # After `quantize`, the dtype is a map naming the quantized sublayers (see
        # `quantized_policy_map`), so that the model rebuilds with int8 variables.
        dtype = quantized_policy_map(self) or base_dtype_policy(self)
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(dtype),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)

    @classmethod
    def get_layout_map(
        cls,
        device_mesh: keras.distribution.DeviceMesh,
        model_axis: str = "model",
        batch_axis: str | None = "batch",
        **kwargs,
    ) -> keras.distribution.LayoutMap:
        """A Megatron-style `keras.distribution.LayoutMap` for this backbone and its task
        models, for `keras.distribution.ModelParallel`; keyword arguments (`fsdp`,
        `vocab_parallel`) as `keras_llm.models.layout.get_layout_map` takes them."""
        return get_layout_map(cls, device_mesh, model_axis=model_axis, batch_axis=batch_axis,
                              **kwargs)

    @classmethod
    def from_preset(cls, name: str, **kwargs):
        """A randomly initialised model of a named size; keyword arguments override the
        preset's (e.g. `dtype`, `dropout`, `vocab_size`)."""
        return cls(**override_config(get_preset(cls.preset_family, name), kwargs))
