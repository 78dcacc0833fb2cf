"""The model-parallel layout maps, checked against the real weight paths and shapes of the
large presets (bert_large, gpt2_xl, t5_large, T5 v1.1), on any backend.

The models are built in a `StatelessScope` that never initialises their variables, so
building gpt2_xl costs shapes and names only. A `DeviceMesh` of device names and its
`LayoutMap` are plain objects on every backend.
"""

from __future__ import annotations

import doctest

import keras
import numpy as np
import pytest

from keras_llm.models import (
    T5,
    Bert,
    BertClassifier,
    BertPretrainer,
    Gpt,
    GptCausalLM,
    T5Seq2SeqLM,
    layout,
)
from keras_llm.models.layout import get_layout_map, layout_problem, layout_rules, matching_rules

MODEL = "model"


def mesh(batch: int = 2, model: int = 2, names=("batch", "model")):
    devices = [f"cpu:{i}" for i in range(batch * model)]
    return keras.distribution.DeviceMesh((batch, model), list(names), devices)


# The intended layout of every weight our models have, by the end of its path (the first
# suffix that matches wins). A separate statement of intent from the module's regexes.
INTENDED = [
    ("/qkv/kernel", (MODEL, None)),  # column-parallel; block kernels are [out, in]
    ("/qkv/bias", (MODEL,)),
    ("/query/kernel", (MODEL, None)),
    ("/key_value/kernel", (MODEL, None)),
    ("attention/output/kernel", (None, MODEL)),  # row-parallel
    ("attention/output/bias", (None,)),
    ("feed_forward/intermediate/kernel", (MODEL, None)),
    ("feed_forward/intermediate/bias", (MODEL,)),
    ("feed_forward/gate/kernel", (MODEL, None)),
    ("feed_forward/output/kernel", (None, MODEL)),
    ("feed_forward/output/bias", (None,)),
    ("token_embedding/embeddings", (None, MODEL)),
    ("position_embedding/embeddings", (None, MODEL)),
    ("segment_embedding/embeddings", (None, None)),
    ("_position_bias/embeddings", (None, None)),
    ("pooler/kernel", (None, MODEL)),
    ("pooler/bias", (MODEL,)),
    ("masked_lm_head/transform/kernel", (None, MODEL)),
    ("masked_lm_head/transform/bias", (MODEL,)),
    ("masked_lm_head/output_bias", (None,)),
    ("lm_head/kernel", (MODEL, None)),
    ("/gamma", (None,)),
    ("/beta", (None,)),
    ("/scale", (None,)),
    # Small task heads match no rule: replicated.
    ("classifier/kernel", None),
    ("classifier/bias", None),
    ("next_sentence/kernel", None),
    ("next_sentence/bias", None),
]


def intended_axes(path: str):
    for suffix, axes in INTENDED:
        if path.endswith(suffix):
            return axes
    raise AssertionError(f"No intended layout for {path}; add one to INTENDED.")


def weight_shapes(make_model) -> list[tuple[str, tuple]]:
    """`(path, shape)` of every weight, without allocating or initialising any."""
    from keras.src.backend.common import global_state

    registry = global_state.get_global_attribute("uninitialized_variables", [],
                                                 set_to_default=True)
    known = len(registry)
    try:
        with keras.StatelessScope(initialize_variables=False):
            model = make_model()
            if not model.built:
                model.build({"token_ids": (None, None)} if "Bert" in type(model).__name__
                            else None)
        return [(v.path, tuple(v.shape)) for v in model.weights]
    finally:  # Drop the deferred variables: a later scope must not initialise 1.5B floats.
        del registry[known:]


MODELS = {
    "bert_large_classifier": lambda: BertClassifier(Bert.from_preset("bert_large"),
                                                    num_classes=2),
    "bert_large_pretrainer": lambda: BertPretrainer(Bert.from_preset("bert_large")),
    "bert_large_alone": lambda: Bert.from_preset("bert_large"),
    "gpt2_xl_causal_lm": lambda: GptCausalLM(Gpt.from_preset("gpt2_xl")),
    "t5_large_seq2seq_lm": lambda: T5Seq2SeqLM(T5.from_preset("t5_large")),
    # T5 v1.1: gated feed-forward and an untied LM head.
    "t5_v1_1_base_seq2seq_lm": lambda: T5Seq2SeqLM(T5.from_preset("t5_v1_1_base")),
}
FAMILY = {"bert": "Bert", "gpt2": "Gpt", "t5": "T5"}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model_weights(request):
    return request.param, weight_shapes(MODELS[request.param])


def test_every_weight_takes_its_intended_layout(model_weights):
    name, weights = model_weights
    family = FAMILY[name.split("_")[0]]
    rules = layout_rules(family)
    layout_map = get_layout_map(family, mesh())
    for path, _ in weights:
        matches = matching_rules(path, rules)
        assert len(matches) <= 1, f"{path} matches several rules: {matches}"
        layout_ = layout_map[path]  # LayoutMap itself raises on several matches.
        axes = None if layout_ is None else layout_.axes
        assert axes == intended_axes(path), f"{path}: {axes} by rule {matches}"


def test_no_large_weight_is_left_replicated(model_weights):
    name, weights = model_weights
    layout_map = get_layout_map(FAMILY[name.split("_")[0]], mesh())
    replicated = 0
    total = 0
    for path, shape in weights:
        layout_ = layout_map[path]
        split = layout_ is not None and MODEL in layout_.axes
        size = int(np.prod(shape))
        total += size
        if len(shape) == 2 and min(shape) >= 128:  # Every matrix but the tiny heads.
            assert split, f"{path} {shape} is replicated"
        if not split:
            replicated += size
    # Norms, row-parallel biases, segment/bucket embeddings and small heads.
    assert replicated / total < 0.005, (replicated, total)


@pytest.mark.parametrize("model_size", [2, 4, 8])
def test_split_dimensions_divide_by_the_model_axis(model_weights, model_size):
    name, weights = model_weights
    device_mesh = mesh(1, model_size)
    layout_map = get_layout_map(FAMILY[name.split("_")[0]], device_mesh)
    for path, shape in weights:
        layout_ = layout_map[path]
        if layout_ is not None:
            assert layout_problem(path, shape, layout_.axes, device_mesh) is None


def test_vocab_parallel_splits_the_vocabulary():
    bert = get_layout_map("Bert", mesh(), vocab_parallel=True)
    assert bert["bert/embeddings/token_embedding/embeddings"].axes == (MODEL, None)
    assert bert["bert_pretrainer/masked_lm_head/output_bias"].axes == (MODEL,)
    t5 = get_layout_map("T5", mesh(), vocab_parallel=True)
    assert t5["t5_seq2_seq_lm/lm_head/kernel"].axes == (None, MODEL)
    # GPT-2's vocabulary is odd: splitting it fails, with a message that names the weight.
    problem = layout_problem("gpt/embeddings/token_embedding/embeddings", (50257, 1600),
                             (MODEL, None), mesh())
    assert "token_embedding" in problem and "50257" in problem
    assert "vocab_parallel=False" in problem


def test_fsdp_also_splits_the_hidden_dimension_over_the_batch_axis():
    layout_map = get_layout_map("Gpt", mesh(), fsdp=True)
    block = "gpt/decoder_block_0"
    assert layout_map[f"{block}/self_attention/qkv/kernel"].axes == (MODEL, "batch")
    assert layout_map[f"{block}/self_attention/output/kernel"].axes == ("batch", MODEL)
    assert layout_map[f"{block}/feed_forward/output/kernel"].axes == ("batch", MODEL)
    assert layout_map[f"{block}/self_attention/qkv/bias"].axes == (MODEL,)
    assert layout_map["gpt/embeddings/token_embedding/embeddings"].axes == (None, MODEL)


def test_custom_axis_names_and_a_mesh_without_a_batch_axis():
    device_mesh = mesh(2, 2, names=("data", "tensor"))
    layout_map = get_layout_map("T5", device_mesh, model_axis="tensor", batch_axis="data",
                                fsdp=True)
    assert layout_map["t5/encoder_block_0/attention/qkv/kernel"].axes == ("tensor", "data")
    only_model = keras.distribution.DeviceMesh((2,), ["model"], ["cpu:0", "cpu:1"])
    layout_map = get_layout_map("Bert", only_model, batch_axis=None)
    assert layout_map["bert/pooler/kernel"].axes == (None, MODEL)


def test_backbones_and_task_models_give_their_family():
    device_mesh = mesh()
    key = "x/encoder_block_0/feed_forward/gate/kernel"
    assert T5.get_layout_map(device_mesh)[key].axes == (MODEL, None)
    assert Bert.get_layout_map(device_mesh, vocab_parallel=True)[
        "bert/embeddings/token_embedding/embeddings"].axes == (MODEL, None)
    classifier = BertClassifier(Bert.from_preset("bert_tiny"), num_classes=2)
    assert len(get_layout_map(classifier, device_mesh)) == len(layout_rules("Bert"))
    assert len(get_layout_map(Gpt, device_mesh)) == len(layout_rules("Gpt"))


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match=r"not the model axis 'model'.*DeviceMesh"):
        get_layout_map("Bert", mesh(names=("batch", "tensor")))
    with pytest.raises(ValueError, match="not the batch axis 'data'"):
        get_layout_map("Bert", mesh(), batch_axis="data")
    with pytest.raises(ValueError, match="different mesh axes"):
        get_layout_map("Bert", mesh(), batch_axis="model")
    with pytest.raises(ValueError, match="fsdp=True .* pass `batch_axis`"):
        get_layout_map("Bert", mesh(), batch_axis=None, fsdp=True)
    with pytest.raises(ValueError, match=r"No model-parallel layout for 'Llama'.*'Bert'"):
        get_layout_map("Llama", mesh())
    problem = layout_problem("bert/pooler/kernel", (128, 128), (None,), mesh())
    assert "has 1 axes but the weight has shape (128, 128)" in problem
    problem = layout_problem("bert/pooler/kernel", (128, 128), (None, "tensor"), mesh())
    assert "'tensor', which the device mesh ['batch', 'model'] lacks" in problem


def test_docstring_examples():
    result = doctest.testmod(layout, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
