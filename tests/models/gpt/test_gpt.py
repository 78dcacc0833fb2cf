import re

import keras
import numpy as np
import pytest
from keras import ops

from keras_llm.models import Gpt, GptCausalLM

TINY = dict(vocab_size=97, num_layers=2, num_heads=2, hidden_size=16, intermediate_size=32,
            max_sequence_length=24)


def to_np(x):
    return ops.convert_to_numpy(x)


def ids(batch=2, length=7, seed=0):
    return np.random.default_rng(seed).integers(0, 97, size=(batch, length))


def test_outputs_and_causality():
    gpt = Gpt(**TINY)
    token_ids = ids()
    hidden = to_np(gpt({"token_ids": token_ids}))
    assert hidden.shape == (2, 7, 16)
    changed = token_ids.copy()
    changed[:, 5:] = 3
    np.testing.assert_allclose(to_np(gpt(changed))[:, :5], hidden[:, :5], atol=1e-5)


def test_cached_logits_equal_full_forward_at_every_step():
    lm = GptCausalLM(Gpt(**TINY, dropout=0.0))
    token_ids = ids(length=10)
    full = to_np(lm({"token_ids": token_ids}))
    gpt = lm.backbone
    cache = gpt.initial_cache(2, 10)
    hidden, cache = gpt.call_with_cache(token_ids[:, :3], cache, 0)
    steps = [to_np(lm.logits(hidden))]
    for i in range(3, 10):
        hidden, cache = gpt.call_with_cache(token_ids[:, i : i + 1], cache, i)
        steps.append(to_np(lm.logits(hidden)))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-4)


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="reads the optimized HLO of a jax.jit; run_all.sh runs this on JAX")
def test_decode_loop_reads_the_cache_in_place():
    """Inside XLA's decode loop the only cache-sized results are the one-slot writes.

    A `[batch, length, heads, head_size]` cache made XLA transpose (and slice) every
    layer's whole cache at every step before its two matmuls.
    """
    import jax

    batch, length = 3, 40
    gpt = Gpt(vocab_size=97, num_layers=2, num_heads=4, hidden_size=64, intermediate_size=64,
              max_sequence_length=length)
    gpt.build({"token_ids": (batch, length)})
    variables = gpt.variables

    def decode(values, token_ids):
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            def step(index, cache):
                one_token = ops.slice(token_ids, [0, index], [batch, 1])
                return gpt.call_with_cache(one_token, cache, index)[1]

            return ops.fori_loop(0, length, step, gpt.initial_cache(batch, length))

    hlo = jax.jit(decode).lower([v.value for v in variables], ids(batch, length)).compile()
    text = hlo.as_text()
    body = re.search(r"body=(%[\w.\-]+)", text).group(1)
    body_text = re.search(re.escape(body) + r" \(.*?\n}", text, re.S).group(0)
    cache_size = batch * 4 * length * 16  # one buffer: [batch, heads, length, head_size]
    producers = []
    for shape, opcode in re.findall(r"= \w+\[([\d,]+)\]\{[^}]*\} ([\w\-]+)\(", body_text):
        if np.prod([int(d) for d in shape.split(",")]) == cache_size and opcode not in (
            "parameter", "get-tuple-element", "bitcast"
        ):
            producers.append(opcode)
    assert producers == ["fusion"] * 4, producers  # keys and values of two layers


def test_presets():
    gpt = Gpt.from_preset("gpt2_small")
    gpt.build({"token_ids": (None, None)})
    assert gpt.count_params() == 124_439_808  # GPT-2 small, as published.
    assert Gpt.from_preset("gpt2_xl").hidden_size == 1600
    with pytest.raises(ValueError, match="Unknown Gpt preset"):
        Gpt.from_preset("bert_base")


@pytest.mark.parametrize(
    "inputs, match",
    [
        ({"ids": ids()}, "token_ids"),
        (np.array([1, 2, 3]), r"\[batch, seq\]"),
        (np.array([[1, 97]]), "outside the vocabulary"),
        (np.ones((1, 25), "int32"), "only 24 positions"),
    ],
)
def test_bad_inputs(inputs, match):
    with pytest.raises(ValueError, match=match):
        Gpt(**TINY)(inputs)


def test_loss_ignores_padding_and_reports_perplexity():
    keras.utils.set_random_seed(0)
    lm = GptCausalLM(Gpt(**TINY, dropout=0.0))
    lm.compile()
    token_ids = ids(length=8)
    padded = np.concatenate([token_ids, np.full((2, 4), 5)], axis=1)
    mask = np.concatenate([np.ones((2, 8)), np.zeros((2, 4))], axis=1).astype("int32")
    short = lm.evaluate({"token_ids": token_ids}, verbose=0, return_dict=True)
    long = lm.evaluate({"token_ids": padded, "padding_mask": mask}, verbose=0, return_dict=True)
    np.testing.assert_allclose(long["loss"], short["loss"], rtol=1e-5)
    np.testing.assert_allclose(long["perplexity"], np.exp(short["loss"]), rtol=1e-4)


def test_training_lowers_the_loss():
    keras.utils.set_random_seed(0)
    lm = GptCausalLM(Gpt(**TINY, dropout=0.0))
    lm.compile(optimizer=keras.optimizers.AdamW(1e-2))
    pattern = np.tile(np.arange(8), (32, 2))  # A sequence the model can learn to continue.
    history = lm.fit({"token_ids": pattern}, epochs=15, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.3 * history.history["loss"][0]


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(policy):
    lm = GptCausalLM(Gpt(**TINY, dtype=policy))
    logits = lm({"token_ids": ids()})
    assert keras.backend.standardize_dtype(logits.dtype) == policy[6:]
    assert np.isfinite(to_np(ops.cast(logits, "float32"))).all()


def test_config_and_save_round_trip(tmp_path):
    lm = GptCausalLM(Gpt(**TINY))
    expected = to_np(lm({"token_ids": ids()}))
    assert GptCausalLM.from_config(lm.get_config()).get_config() == lm.get_config()
    lm.save(tmp_path / "lm.keras")
    restored = keras.models.load_model(tmp_path / "lm.keras")
    np.testing.assert_allclose(to_np(restored({"token_ids": ids()})), expected, atol=1e-6)
    lm.save_weights(tmp_path / "lm.weights.h5")
    other = GptCausalLM(Gpt(**TINY))
    other({"token_ids": ids()})
    other.load_weights(tmp_path / "lm.weights.h5")
    np.testing.assert_allclose(to_np(other({"token_ids": ids()})), expected, atol=1e-6)


def test_attention_dropout_reaches_every_block_and_round_trips():
    gpt = Gpt(**TINY, dropout=0.1, attention_dropout=0.0)
    assert [block.attention_dropout for block in gpt.decoder_blocks] == [0.0, 0.0]
    assert [block.dropout for block in gpt.decoder_blocks] == [0.1, 0.1]
    assert Gpt.from_config(gpt.get_config()).attention_dropout == 0.0
    assert Gpt(**TINY, dropout=0.1).attention_dropout == 0.1
