import keras
import numpy as np
import pytest
from keras import ops

from keras_llm.generation import get_sampler
from keras_llm.models import T5, T5Seq2SeqLM
from keras_llm.models.t5 import shift_right

TINY = dict(vocab_size=53, num_layers=2, num_heads=2, hidden_size=16, key_value_size=8,
            intermediate_size=24, num_decoder_layers=3, relative_attention_num_buckets=8,
            relative_attention_max_distance=16, dropout=0.0, max_sequence_length=32)


def to_np(x):
    return ops.convert_to_numpy(x)


def batch(seed=0):
    rng = np.random.default_rng(seed)
    encoder = rng.integers(2, 53, size=(2, 9))
    mask = np.ones_like(encoder)
    mask[1, 5:] = 0
    return {"encoder_token_ids": encoder, "encoder_padding_mask": mask,
            "decoder_token_ids": rng.integers(2, 53, size=(2, 6))}


@pytest.mark.parametrize("feed_forward, tie", [("relu", True), ("gated-gelu", False)])
def test_cached_decoding_equals_full_forward(feed_forward, tie):
    keras.utils.set_random_seed(1)
    lm = T5Seq2SeqLM(T5(**TINY, feed_forward=feed_forward, tie_embeddings=tie))
    inputs = batch()
    full = to_np(lm(inputs))
    t5 = lm.backbone
    encoder_output = t5.encode(inputs["encoder_token_ids"], inputs["encoder_padding_mask"])
    cross = t5.cross_attention_cache(encoder_output)
    cache = t5.initial_cache(2, 6)
    steps = []
    for i in range(6):
        hidden, cache = t5.decode_with_cache(inputs["decoder_token_ids"][:, i : i + 1], cache,
                                             cross, inputs["encoder_padding_mask"], i)
        steps.append(to_np(lm.logits(hidden)))
    np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-4)


def test_padding_in_the_encoder_is_ignored():
    lm = T5Seq2SeqLM(T5(**TINY))
    inputs = batch()
    changed = {k: v.copy() for k, v in inputs.items()}
    changed["encoder_token_ids"][1, 5:] = 7
    np.testing.assert_allclose(to_np(lm(inputs))[1], to_np(lm(changed))[1], atol=1e-5)


def test_generate_shapes_stop_and_no_recompile():
    lm = T5Seq2SeqLM(T5(**TINY))
    out = lm.generate([[5, 6, 7, 1], [8, 1]], max_new_tokens=5)
    assert out.shape == (2, 5)
    traces = lm.generate_trace_count
    lm.generate([[9, 10, 11, 1], [12, 1]], max_new_tokens=5)
    assert lm.generate_trace_count == traces
    beam = lm.generate([[5, 6, 7, 1], [8, 1]], max_new_tokens=5, strategy="beam", num_beams=1)
    np.testing.assert_array_equal(beam, out)
    sampled = lm.generate([[5, 6, 7, 1]], max_new_tokens=5, strategy="top_k", top_k=3, seed=2)
    assert sampled.shape == (1, 5)
    first = int(out[0, 0])
    stopped = lm.generate([[5, 6, 7, 1]], max_new_tokens=5, stop_token_ids=[first])
    assert stopped[0, 0] == first and (stopped[0, 1:] == 0).all()


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="reads the optimized HLO of a jax.jit; run_all.sh runs this on JAX")
def test_a_fixed_number_of_new_tokens_decodes_in_a_counted_loop():
    """`generate` fills its whole buffer (`fixed_new_tokens`), so without stop tokens its loop
    has a trip count XLA knows; an exported signature, whose `max_new_tokens` is a run-time
    input, checks every step."""
    import jax

    lm = T5Seq2SeqLM(T5(**TINY))
    lm(batch())  # builds the layers the decode function reads
    inputs = (np.ones((1, 4), "int32"), np.ones((1, 4), "bool"), np.zeros((1, 9), "int32"),
              np.ones((1,), "int32"), np.int32(0), np.int32(8))

    def optimized_hlo(fixed_new_tokens):
        decode = lm.make_decode_function(get_sampler("greedy"), (), fixed_new_tokens)
        return jax.jit(decode).lower(*inputs).compile().as_text()

    assert '"known_trip_count":{"n":"8"}' in optimized_hlo(8)
    assert "known_trip_count" not in optimized_hlo(None)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda lm: lm.generate([[5, 6], []], max_new_tokens=3), "Input 1 is empty"),
        (lambda lm: lm.generate([list(range(2, 40))], max_new_tokens=3), "max_sequence_length"),
        (lambda lm: lm.generate([[5, 99]], max_new_tokens=3), "token id 99"),
        (lambda lm: lm.generate([[5]], max_new_tokens=0), "positive integer"),
        (lambda lm: lm.generate("text", max_new_tokens=3), "need a tokenizer"),
        (lambda lm: lm({"encoder_token_ids": np.ones((1, 3), "int32")}), "decoder_token_ids"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call(T5Seq2SeqLM(T5(**TINY)))


def test_decoder_start_token_must_be_in_the_vocabulary():
    with pytest.raises(ValueError, match="decoder_start_token_id=60"):
        T5Seq2SeqLM(T5(**TINY), decoder_start_token_id=60)


def test_loss_ignores_padding_and_training_learns():
    keras.utils.set_random_seed(0)
    lm = T5Seq2SeqLM(T5(**TINY))
    lm.compile(optimizer=keras.optimizers.AdamW(1e-2))
    rng = np.random.default_rng(0)
    encoder = rng.integers(2, 53, size=(32, 6))
    labels = np.concatenate([encoder[:, ::-1][:, :4], np.ones((32, 1), "int64")], axis=1)
    x = {"encoder_token_ids": encoder, "decoder_token_ids": to_np(shift_right(labels))}
    padded_labels = np.concatenate([labels, np.zeros((32, 3), "int64")], axis=1)
    padded_x = {**x, "decoder_token_ids": to_np(shift_right(padded_labels)),
                "decoder_padding_mask": (np.arange(8) < 5)[None].repeat(32, 0).astype("int32")}
    short = lm.evaluate(x, labels, verbose=0, return_dict=True)
    long = lm.evaluate(padded_x, padded_labels, verbose=0, return_dict=True)
    np.testing.assert_allclose(long["loss"], short["loss"], rtol=1e-5)
    history = lm.fit(x, labels, epochs=30, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.3 * history.history["loss"][0]


def test_presets_config_and_saving(tmp_path):
    small = T5.from_preset("t5_small")
    small.build()
    assert small.count_params() == 60_506_624  # T5-small as published (tied head).
    assert T5.from_preset("t5_v1_1_base").feed_forward == "gated-gelu"
    lm = T5Seq2SeqLM(T5(**TINY, feed_forward="gated-gelu", tie_embeddings=False))
    expected = to_np(lm(batch()))
    assert T5Seq2SeqLM.from_config(lm.get_config()).get_config() == lm.get_config()
    lm.save(tmp_path / "t5.keras")
    restored = keras.models.load_model(tmp_path / "t5.keras")
    np.testing.assert_allclose(to_np(restored(batch())), expected, atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision(policy):
    logits = T5Seq2SeqLM(T5(**TINY, dtype=policy))(batch())
    assert keras.backend.standardize_dtype(logits.dtype) == policy[6:]
    assert np.isfinite(to_np(ops.cast(logits, "float32"))).all()
