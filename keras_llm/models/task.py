"""The base of every task model: a backbone plus a head, saved and loaded as one."""

from __future__ import annotations

import keras

from keras_llm.models.backbone import (
    base_dtype_policy,
    quantized_policy_map,
    resolve_quantized_policies,
)


class _TaskType(type(keras.Model)):
    """Builds a task made around an already built backbone (loaded weights) once it exists.

    Runs after the whole constructor, a subclass's included, so that the head layers the
    subclass creates after `Task.__init__` are there to build.
    """

    def __call__(cls, *args, **kwargs):
        task = super().__call__(*args, **kwargs)
        backbone = getattr(task, "backbone", None)
        if not task.built and backbone is not None and backbone.built:
            task.build(task.default_input_shape())
        return task


class Task(keras.Model, metaclass=_TaskType):
    """A `keras.Model` that wraps a backbone (`self.backbone`) and adds a head.

    Subclasses create their head layers in `__init__`, build them in
    `build_head`, and list their own constructor arguments in `get_config`
    (through `head_config`); the backbone is serialized with its config.

    A task made around a built backbone (e.g. one from `from_pretrained`) is built
    as soon as it is constructed, its head included, so it can be saved or exported
    without being called first.

    Example:
    >>> import keras, numpy as np, keras_llm
    >>> class MeanPooledRegressor(keras_llm.models.Task):
    ...     def __init__(self, backbone, **kwargs):
    ...         super().__init__(backbone, **kwargs)
    ...         self.score = keras.layers.Dense(1)
    ...     def build_head(self, input_shape):
    ...         self.score.build((None, self.backbone.hidden_size))
    ...     def call(self, inputs):
    ...         sequence = self.backbone(inputs)["sequence_output"]
    ...         return self.score(keras.ops.mean(sequence, axis=1))
    >>> regressor = MeanPooledRegressor(keras_llm.models.Bert.from_preset("bert_tiny"))
    >>> tuple(regressor({"token_ids": np.array([[101, 2307, 102]])}).shape)
    (1, 1)
    """

    backbone_class: type[keras.Model] | None = None

    def __init__(self, backbone: keras.Model, **kwargs):
        # The backbone's policy, but not a map of its quantized layers (see `get_config`).
        kwargs.setdefault("dtype", base_dtype_policy(backbone))
        super().__init__(**kwargs)
        self.backbone = backbone

    # The input dict a bare `build()` assumes; it also gives the SavedModel a default signature.
    default_input_keys: tuple[str, ...] = ("token_ids",)

    def default_input_shape(self) -> dict[str, tuple[None, None]]:
        """`{key: (None, None)}` for each of `default_input_keys`: any batch and length."""
        return {key: (None, None) for key in self.default_input_keys}

    def build(self, input_shape=None):
        if input_shape is None:
            input_shape = self.default_input_shape()
        if not self.backbone.built:
            self.backbone.build(input_shape)
        if not self.built:  # Building a head twice would add a second set of weights.
            self.build_head(input_shape)
        resolve_quantized_policies(self)
        self.built = True

    def _post_build(self):
        # Keras' build wrapper records the arguments `build` was called with as the model's
        # input shapes (its default SavedModel signature, its build config), after `build`
        # returns. A bare `build()` or `build(None)` stands for the default inputs: record
        # those, not `None`, which a SavedModel export would trace as a tensor of unknown rank.
        super()._post_build()
        shapes = self._build_shapes_dict
        if shapes is not None and all(value is None for value in shapes.values()):
            self._build_shapes_dict = {"input_shape": self.default_input_shape()}

    def build_head(self, input_shape) -> None:
        raise NotImplementedError

    def head_config(self) -> dict:
        return {}

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            **self.head_config(),
        }
        # A quantized head (the backbone's layers are in the backbone's config).
        head_policies = quantized_policy_map(self, exclude=self.backbone._flatten_layers())
        if head_policies is not None:
            config["dtype"] = keras.dtype_policies.serialize(head_policies)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)
