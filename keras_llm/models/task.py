"""The base of every task model: a backbone plus a head, saved and loaded as one."""

from __future__ import annotations

import keras


class Task(keras.Model):
    """A `keras.Model` that wraps a backbone (`self.backbone`) and adds a head.

    Subclasses create their head layers in `__init__`, build them in
    `build_head`, and list their own constructor arguments in `get_config`
    (through `head_config`); the backbone is serialized with its config.
    """

    backbone_class: type[keras.Model] | None = None

    def __init__(self, backbone: keras.Model, **kwargs):
        kwargs.setdefault("dtype", backbone.dtype_policy)
        super().__init__(**kwargs)
        self.backbone = backbone

    # The input dict a bare `build()` assumes; it also gives the SavedModel a default signature.
    default_input_keys: tuple[str, ...] = ("token_ids",)

    def build(self, input_shape=None):
        if input_shape is None:
            # Re-enter through Keras' build wrapper so it records real input shapes.
            return self.build({key: (None, None) for key in self.default_input_keys})
        if not self.backbone.built:
            self.backbone.build(input_shape)
        self.build_head(input_shape)
        self.built = True

    def build_head(self, input_shape) -> None:
        raise NotImplementedError

    def head_config(self) -> dict:
        return {}

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            **self.head_config(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
