"""Every docstring example in the library runs and prints what it shows, and every public
class has one.

On a backend other than TensorFlow only the backend-agnostic packages (those `run_all.sh`
tests on JAX) are collected: data, tokenizers, export and training are TensorFlow's edges.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import keras
import pytest

import keras_llm

PACKAGES = ("layers", "models", "generation", "metrics", "tokenizers", "convert", "data",
            "export", "training")
BACKEND_AGNOSTIC = ("layers", "models", "generation", "metrics", "convert")


def _library_modules() -> list[str]:
    packages = PACKAGES if keras.backend.backend() == "tensorflow" else BACKEND_AGNOSTIC
    names = []
    for package in packages:
        prefix = f"keras_llm.{package}"
        names.append(prefix)
        path = importlib.import_module(prefix).__path__
        names += [
            info.name
            for info in pkgutil.walk_packages(path, prefix + ".")
            if not info.name.endswith("__main__")
        ]
    return names


@pytest.mark.parametrize("module_name", _library_modules())
def test_docstring_examples_run(module_name, capsys):
    module = importlib.import_module(module_name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=False
    )
    assert result.failed == 0, capsys.readouterr().out


def test_every_public_class_has_an_example():
    without = []
    for package in PACKAGES:
        package_module = importlib.import_module(f"keras_llm.{package}")
        for name in package_module.__all__:
            public = getattr(package_module, name)
            if inspect.isclass(public) and ">>>" not in (inspect.getdoc(public) or ""):
                without.append(f"keras_llm.{package}.{name}")
    assert not without, f"public classes without a runnable example: {without}"


def test_the_package_root_names_every_subpackage():
    # A new subpackage must join PACKAGES above, or its examples would never run.
    subpackages = {info.name for info in pkgutil.iter_modules(keras_llm.__path__) if info.ispkg}
    assert subpackages == set(PACKAGES)
