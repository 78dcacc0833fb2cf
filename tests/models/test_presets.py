import pytest

import keras_llm


def test_list_presets():
    names = keras_llm.models.list_presets()
    for size in ("tiny", "mini", "small", "medium", "base", "large"):
        assert f"bert_{size}" in names
    assert keras_llm.models.list_presets("Bert") == [n for n in names if n.startswith("bert_")]


@pytest.mark.parametrize(
    "name, layers, hidden, heads",
    [("bert_tiny", 2, 128, 2), ("bert_mini", 4, 256, 4), ("bert_small", 4, 512, 8),
     ("bert_medium", 8, 512, 8), ("bert_base", 12, 768, 12), ("bert_large", 24, 1024, 16)],
)
def test_preset_shapes(name, layers, hidden, heads):
    bert = keras_llm.models.Bert.from_preset(name)
    assert (bert.num_layers, bert.hidden_size, bert.num_heads) == (layers, hidden, heads)
    assert bert.intermediate_size == 4 * hidden


def test_bert_base_parameter_count():
    bert = keras_llm.models.Bert.from_preset("bert_base")
    bert.build({"token_ids": (None, None)})
    assert bert.count_params() == 109_482_240  # The published BERT-base size.


def test_unknown_preset():
    with pytest.raises(ValueError, match="Unknown Bert preset 'bert_huge'"):
        keras_llm.models.Bert.from_preset("bert_huge")
