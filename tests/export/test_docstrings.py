"""The runnable examples in the export modules' docstrings run."""

from __future__ import annotations

import doctest

import pytest

from keras_llm.export import client, saved_model


@pytest.mark.parametrize("module", [client, saved_model], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
