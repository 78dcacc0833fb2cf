"""`benchmarks/peers.py`: keras-hub and Hugging Face models of a keras-llm preset's shape."""

import numpy as np
import pytest

import keras_llm
from benchmarks.common import BenchmarkError
from benchmarks.peers import FAMILIES, huggingface_config, keras_hub_backbone, model_shape


@pytest.mark.parametrize("family, preset", [("bert", "bert_tiny"), ("gpt", "gpt2_tiny"),
                                            ("t5", "t5_tiny")])
def test_every_library_builds_the_same_number_of_parameters(family, preset):
    import transformers

    ours = getattr(keras_llm.models, FAMILIES[family]).from_preset(preset)
    shape = model_shape(ours)
    assert not {"name", "dtype", "trainable"} & set(vars(shape))
    peer = keras_hub_backbone(family, shape, dropout=0.0, dtype="float32")
    config = huggingface_config(family, shape, dropout=0.0)
    reference = {"bert": transformers.BertModel, "gpt": transformers.GPT2Model,
                 "t5": transformers.T5Model}[family](config)
    if family == "bert":
        inputs = {"token_ids": np.ones((1, 4), "int32"), "segment_ids": np.zeros((1, 4), "int32"),
                  "padding_mask": np.ones((1, 4), "int32")}
    elif family == "gpt":
        inputs = {"token_ids": np.ones((1, 4), "int32"), "padding_mask": np.ones((1, 4), "int32")}
    else:
        inputs = {f"{side}_{key}": np.ones((1, 4), "int32") for side in ("encoder", "decoder")
                  for key in ("token_ids", "padding_mask")}
    ours(inputs)
    peer(inputs)
    assert ours.count_params() == peer.count_params()
    # Tied weights (T5's embedding and head) count once, as in keras-llm.
    assert ours.count_params() == sum(p.numel() for p in reference.parameters())
    assert reference.config._attn_implementation == "sdpa"


def test_a_t5_that_keras_hub_cannot_build_is_a_clear_error():
    shape = model_shape(keras_llm.models.T5.from_preset("t5_v1_1_small"))
    with pytest.raises(BenchmarkError, match="T5 v1.0 preset"):
        keras_hub_backbone("t5", shape, dropout=0.0, dtype="float32")
    with pytest.raises(ValueError, match="model must be one of"):
        keras_hub_backbone("bart", shape, dropout=0.0, dtype="float32")
