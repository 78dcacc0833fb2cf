"""When a task model is built, and with which input shapes Keras records it built.

A task made around a built backbone (loaded weights) is built with its head at once; one
built by `generate` or a bare `build()` records the default inputs `{key: (None, None)}`
(Keras' record of `build`'s arguments becomes the SavedModel's default signature and the
`.keras` build config; `None` there cannot be traced).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_llm.models import (
    T5,
    Bert,
    BertClassifier,
    BertContrastive,
    BertQuestionAnswerer,
    BertTokenClassifier,
    Gpt,
    GptCausalLM,
    T5Seq2SeqLM,
)

GPT = dict(vocab_size=97, num_layers=2, num_heads=2, hidden_size=16, intermediate_size=32,
           max_sequence_length=24, dropout=0.0)
T5_ARGS = dict(vocab_size=97, num_layers=2, num_heads=2, hidden_size=16, key_value_size=8,
               intermediate_size=32, dropout=0.0, max_sequence_length=24, tie_embeddings=False)
BERT = dict(vocab_size=97, num_layers=1, num_heads=2, hidden_size=16, intermediate_size=32,
            max_sequence_length=24)
GPT_SHAPES = {"input_shape": {"token_ids": (None, None)}}
T5_SHAPES = {"input_shape": {"encoder_token_ids": (None, None),
                             "decoder_token_ids": (None, None)}}


def built_gpt() -> Gpt:
    gpt = Gpt(**GPT)
    gpt({"token_ids": np.array([[1, 2, 3]])})
    return gpt


def built_t5() -> T5:
    t5 = T5(**T5_ARGS)
    t5.build()
    return t5


def built_bert() -> Bert:
    bert = Bert(**BERT)
    bert.build({"token_ids": (None, None)})
    return bert


TASKS = {
    "GptCausalLM": (lambda backbone: GptCausalLM(backbone), built_gpt, lambda: Gpt(**GPT)),
    "T5Seq2SeqLM": (lambda backbone: T5Seq2SeqLM(backbone), built_t5, lambda: T5(**T5_ARGS)),
    "BertClassifier": (lambda backbone: BertClassifier(backbone, num_classes=3), built_bert,
                       lambda: Bert(**BERT)),
    "BertQuestionAnswerer": (BertQuestionAnswerer, built_bert, lambda: Bert(**BERT)),
    "BertTokenClassifier": (lambda backbone: BertTokenClassifier(backbone, num_classes=3),
                            built_bert, lambda: Bert(**BERT)),
    "BertContrastive": (lambda backbone: BertContrastive(backbone, projection_dim=8), built_bert,
                        lambda: Bert(**BERT)),
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_task_around_a_built_backbone_is_built_with_its_head(name):
    make_task, make_built, _ = TASKS[name]
    backbone = make_built()
    weights = [np.array(w) for w in backbone.weights]
    task = make_task(backbone)
    assert task.built
    assert all(layer.built for layer in task._flatten_layers())
    # The backbone keeps its (loaded) weights, the head adds its own once.
    assert len(task.weights) >= len(weights)
    for before, after in zip(weights, backbone.weights, strict=True):
        np.testing.assert_array_equal(before, np.array(after))
    count = len(task.weights)
    task.build()  # Building again adds nothing.
    assert len(task.weights) == count
    if name != "T5Seq2SeqLM":
        assert task.get_build_config() == GPT_SHAPES


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_task_around_an_unbuilt_backbone_waits(name):
    make_task, _, make_unbuilt = TASKS[name]
    task = make_task(make_unbuilt())
    assert not task.built and not task.backbone.built


@pytest.mark.parametrize("build", ["build()", "build(None)"])
def test_a_bare_build_records_the_default_input_shapes(build):
    lm = GptCausalLM(Gpt(**GPT))
    lm.build() if build == "build()" else lm.build(None)
    assert lm.get_build_config() == GPT_SHAPES
    t5 = T5Seq2SeqLM(T5(**T5_ARGS))
    t5.build() if build == "build()" else t5.build(None)
    assert t5.get_build_config() == T5_SHAPES


def test_generate_builds_for_any_batch_and_length():
    lm = GptCausalLM(Gpt(**GPT))
    lm.generate(np.array([[1, 2, 3]]), max_new_tokens=2)
    assert lm.built and lm.get_build_config() == GPT_SHAPES
    t5 = T5Seq2SeqLM(T5(**T5_ARGS))
    t5.generate(np.array([[5, 6, 1]]), max_new_tokens=2)
    assert t5.built and t5.lm_head.built and t5.get_build_config() == T5_SHAPES


def test_a_call_after_building_at_construction_changes_nothing():
    lm = GptCausalLM(built_gpt())
    count = len(lm.weights)
    logits = lm({"token_ids": np.array([[4, 5, 6, 7]])})
    assert tuple(logits.shape) == (1, 4, GPT["vocab_size"]) and len(lm.weights) == count
    assert lm.get_build_config() == GPT_SHAPES


def test_saved_and_loaded_after_building_at_construction(tmp_path):
    keras.utils.set_random_seed(3)
    lm = T5Seq2SeqLM(built_t5())
    expected = lm.generate(np.array([[5, 6, 7, 1]]), max_new_tokens=4)
    lm.save(tmp_path / "t5.keras")
    loaded = keras.saving.load_model(tmp_path / "t5.keras")
    assert loaded.built and loaded.get_build_config() == T5_SHAPES
    np.testing.assert_array_equal(loaded.generate(np.array([[5, 6, 7, 1]]), max_new_tokens=4),
                                  expected)
