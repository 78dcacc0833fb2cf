"""A registry of named architectures (randomly initialised shapes) for every model."""

from __future__ import annotations

# name -> (model class name, constructor arguments)
_PRESETS: dict[str, tuple[str, dict]] = {}


def register_presets(model_name: str, presets: dict[str, dict]) -> None:
    """Adds `presets` (name -> constructor arguments) for the model class `model_name`."""
    for name, config in presets.items():
        if name in _PRESETS:
            raise ValueError(f"Preset {name!r} is already registered.")
        _PRESETS[name] = (model_name, dict(config))


def get_preset(model_name: str, name: str) -> dict:
    """The constructor arguments of preset `name`, checking it belongs to `model_name`."""
    if name not in _PRESETS or _PRESETS[name][0] != model_name:
        raise ValueError(
            f"Unknown {model_name} preset {name!r}. Available: {list_presets(model_name)}. "
            "To load trained weights from a local folder, use `from_pretrained(path)`."
        )
    return dict(_PRESETS[name][1])


def list_presets(model_name: str | None = None) -> list[str]:
    """Names of the registered presets, all of them or those of one model class."""
    return sorted(n for n, (m, _) in _PRESETS.items() if model_name in (None, m))
