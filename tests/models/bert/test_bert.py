import keras
import numpy as np
import pytest
from keras import ops

from keras_llm.models import Bert

TINY = dict(vocab_size=100, num_layers=2, num_heads=2, hidden_size=16, intermediate_size=32,
            max_sequence_length=12)


def batch():
    token_ids = np.array([[2, 10, 11, 12, 3, 0, 0], [2, 20, 21, 3, 30, 31, 3]])
    return {
        "token_ids": token_ids,
        "segment_ids": np.array([[0] * 7, [0, 0, 0, 0, 1, 1, 1]]),
        "padding_mask": (token_ids != 0).astype("int32"),
    }


def to_np(x):
    return ops.convert_to_numpy(x)


def test_outputs_and_attention_maps():
    bert = Bert(**TINY)
    outputs = bert(batch())
    assert outputs["sequence_output"].shape == (2, 7, 16)
    assert outputs["pooled_output"].shape == (2, 16)
    assert "attention_scores" not in outputs
    with_maps = bert(batch(), return_attention_scores=True)
    maps = with_maps["attention_scores"]
    assert len(maps) == 2 and maps[0].shape == (2, 2, 7, 7)
    # Padded keys get no attention; rows are distributions.
    np.testing.assert_allclose(to_np(maps[1])[0, :, :, 5:], 0, atol=1e-7)
    np.testing.assert_allclose(to_np(maps[1]).sum(-1), 1, atol=1e-5)
    np.testing.assert_allclose(
        to_np(with_maps["sequence_output"]), to_np(outputs["sequence_output"]), atol=1e-5
    )


def test_padding_does_not_change_real_tokens():
    bert = Bert(**TINY)
    inputs = batch()
    changed = {k: v.copy() for k, v in inputs.items()}
    changed["token_ids"][0, 5:] = 99
    a = to_np(bert(inputs)["sequence_output"])[0, :5]
    b = to_np(bert(changed)["sequence_output"])[0, :5]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_defaults_for_optional_inputs():
    bert = Bert(**TINY)
    ids = np.array([[2, 10, 3]])
    full = bert({"token_ids": ids, "segment_ids": np.zeros_like(ids),
                 "padding_mask": np.ones_like(ids)})
    short = bert({"token_ids": ids})
    np.testing.assert_allclose(to_np(full["pooled_output"]), to_np(short["pooled_output"]),
                               atol=1e-6)


@pytest.mark.parametrize(
    "inputs, match",
    [
        (np.array([[1, 2]]), "take a dict"),
        ({"ids": np.array([[1, 2]])}, "take a dict"),
        ({"token_ids": np.array([1, 2])}, r"\[batch, seq\]"),
        ({"token_ids": np.array([[1, 2]]), "padding_mask": np.array([[1, 1, 1]])}, "must match"),
        ({"token_ids": np.array([[1, 2]]), "labels": np.array([[1, 1]])}, "Unexpected"),
        ({"token_ids": np.array([[1, 100]])}, "outside the vocabulary"),
        ({"token_ids": np.ones((1, 13), "int32")}, "only 12 positions"),
    ],
)
def test_bad_inputs_raise_clear_errors(inputs, match):
    with pytest.raises(ValueError, match=match):
        Bert(**TINY)(inputs)


def test_bad_config():
    with pytest.raises(ValueError, match="divisible"):
        Bert(**{**TINY, "num_heads": 3})


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(policy):
    bert = Bert(**TINY, dtype=policy)
    outputs = bert(batch())
    assert keras.backend.standardize_dtype(outputs["sequence_output"].dtype) == policy[6:]
    assert all(w.dtype == "float32" for w in bert.weights)
    reference = Bert(**TINY)
    reference(batch())
    reference.set_weights(bert.get_weights())
    np.testing.assert_allclose(
        to_np(ops.cast(outputs["sequence_output"], "float32")),
        to_np(reference(batch())["sequence_output"]), atol=0.1,
    )


def test_config_round_trip():
    bert = Bert(**TINY, hidden_act="gelu_approximate", dropout=0.0)
    clone = Bert.from_config(bert.get_config())
    assert clone.get_config() == bert.get_config()


def test_attention_dropout_defaults_to_dropout_and_round_trips():
    bert = Bert(**TINY, dropout=0.1)
    assert bert.attention_dropout == 0.1
    bert = Bert(**TINY, dropout=0.1, attention_dropout=0.0)
    assert [block.attention_dropout for block in bert.encoder_blocks] == [0.0, 0.0]
    assert [block.dropout for block in bert.encoder_blocks] == [0.1, 0.1]
    clone = Bert.from_config(bert.get_config())
    assert clone.attention_dropout == 0.0 and clone.get_config() == bert.get_config()
    tiny = Bert.from_preset("bert_tiny", dropout=0.0)
    assert (tiny.dropout, tiny.attention_dropout) == (0.0, 0.0)
    tiny = Bert.from_preset("bert_tiny", attention_dropout=0.0)
    assert (tiny.dropout, tiny.attention_dropout) == (0.1, 0.0)


def test_override_config_moves_attention_dropout_with_dropout():
    from keras_llm.models.backbone import override_config

    config = {"dropout": 0.1, "attention_dropout": 0.1, "num_layers": 2}
    assert override_config(config, {"dropout": 0.0})["attention_dropout"] == 0.0
    assert override_config(config, {"dropout": 0.0, "attention_dropout": 0.2}) == {
        "dropout": 0.0, "attention_dropout": 0.2, "num_layers": 2}
    assert override_config({"dropout": 0.1}, {"dropout": 0.0}) == {"dropout": 0.0}  # T5
    assert override_config(config, {"num_layers": 1})["attention_dropout"] == 0.1


def test_no_attention_dropout_trains_through_the_fused_kernel(attention_kernel_calls):
    # With attention_dropout=0 a training call must not materialize the probabilities.
    calls = attention_kernel_calls
    Bert(**TINY, dropout=0.1, attention_dropout=0.0)(batch(), training=True)
    assert len(calls) == TINY["num_layers"]
    calls.clear()
    Bert(**TINY, dropout=0.1)(batch(), training=True)
    assert calls == []


def test_save_and_load(tmp_path):
    bert = Bert(**TINY)
    expected = bert(batch())
    bert.save(tmp_path / "bert.keras")
    restored = keras.models.load_model(tmp_path / "bert.keras")
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(to_np(restored(batch())[key]), to_np(expected[key]), atol=1e-6)
    other = Bert(**TINY)
    other(batch())
    bert.save_weights(tmp_path / "bert.weights.h5")
    other.load_weights(tmp_path / "bert.weights.h5")
    np.testing.assert_allclose(to_np(other(batch())["pooled_output"]),
                               to_np(expected["pooled_output"]), atol=1e-6)
