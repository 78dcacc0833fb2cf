"""The base of every backbone: presets and a config that round-trips with its dtype policy."""

from __future__ import annotations

import keras

from keras_llm.models.presets import get_preset


class Backbone(keras.Model):
    """A `keras.Model` built from constructor arguments that `get_config` lists.

    Subclasses set `preset_family` (the name their presets are registered
    under) and return `{**self.base_config(), <their arguments>}` from
    `get_config`.
    """

    preset_family: str = ""

    def base_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)

    @classmethod
    def from_preset(cls, name: str, **kwargs):
        """A randomly initialised model of a named size; keyword arguments override the
        preset's (e.g. `dtype`, `dropout`, `vocab_size`)."""
        config = get_preset(cls.preset_family, name)
        config.update(kwargs)
        return cls(**config)
