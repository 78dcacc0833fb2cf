import re

import keras
import numpy as np
import pytest
from keras import ops

from keras_llm.generation import (
    BeamSampler,
    RandomSampler,
    beam_search_loop,
    compile_stateful,
    sample_loop,
)
from keras_llm.generation.decoding import steps_between_checks

VOCAB = 11


def toy_step(previous, cache, index):
    """Logits that depend on the last token, the position and every earlier token (the
    cache holds their running sum), so a step run twice or out of order changes them."""
    cache = cache + ops.cast(previous[:, 0], "float32")
    scores = ops.cast(previous * 3 + index, "float32") + cache[:, None] * 0.37
    logits = ops.sin(scores * ops.arange(1, VOCAB + 1, dtype="float32")[None, :]) * 4.0
    return logits, cache


def decode(prompts: list[list[int]], max_new_tokens: int, steps_per_check=None,
           stop_token_ids=(), seed=5, num_beams=None):
    """Random sampling, or beam search with `num_beams`, from right-padded prompts."""
    width = max(len(p) for p in prompts) + max_new_tokens
    token_ids = np.full((len(prompts), width), 0, "int32")
    for row, prompt in enumerate(prompts):
        token_ids[row, : len(prompt)] = prompt
    lengths = np.array([len(p) for p in prompts], "int32")
    cache = ops.zeros((len(prompts),))
    if num_beams:
        return ops.convert_to_numpy(beam_search_loop(
            toy_step, token_ids, lengths, cache, BeamSampler(num_beams), max_new_tokens,
            stop_token_ids, pad_token_id=10, steps_per_check=steps_per_check))
    return ops.convert_to_numpy(sample_loop(
        toy_step, token_ids, lengths, cache, RandomSampler(), seed, max_new_tokens,
        stop_token_ids, pad_token_id=10, steps_per_check=steps_per_check))


@pytest.mark.parametrize("max_new_tokens, stop_token_ids, expected", [
    (128, (), 16), (20, (), 10), (17, (), 9), (5, (), 5), (1, (), 1), (128, (2,), 1),
])
def test_steps_between_checks(max_new_tokens, stop_token_ids, expected):
    assert steps_between_checks(max_new_tokens, stop_token_ids) == expected


@pytest.mark.parametrize("num_beams", [None, 3])
@pytest.mark.parametrize("stop_token_ids", [(), (3,)])
def test_output_does_not_depend_on_steps_between_checks(stop_token_ids, num_beams):
    # Ragged prompts: the loop starts at the shortest and the last check overruns the end.
    prompts = [[1, 2, 3, 4, 5], [6], [7, 8]]
    every_step = decode(prompts, 6, steps_per_check=1, stop_token_ids=stop_token_ids,
                        num_beams=num_beams)
    assert (every_step[:, 5] != 10).any()  # something was sampled, not only padding
    for steps in (2, 4, 6, 16):
        np.testing.assert_array_equal(
            decode(prompts, 6, steps_per_check=steps, stop_token_ids=stop_token_ids,
                   num_beams=num_beams),
            every_step, err_msg=f"steps_per_check={steps}")
    if stop_token_ids:
        assert (every_step == 3).any()  # the stop token was met and ended a row


@pytest.mark.skipif(keras.backend.backend() != "jax",
                    reason="reads the optimized HLO of a jax.jit; run_all.sh runs this on JAX")
def test_without_stop_tokens_the_decode_steps_run_in_a_counted_loop():
    """XLA knows the trip count of the inner loop, so a GPU runs it with no host round trip."""
    import jax

    def compiled_loop(stop_token_ids, max_new_tokens=None, num_beams=None):
        def run(token_ids, lengths, max_new_tokens):
            if num_beams:
                return beam_search_loop(toy_step, token_ids, lengths, ops.zeros((2,)),
                                        BeamSampler(num_beams), max_new_tokens, stop_token_ids)
            return sample_loop(toy_step, token_ids, lengths, ops.zeros((2,)), RandomSampler(),
                               1, max_new_tokens, stop_token_ids)

        token_ids, lengths = np.ones((2, 44), "int32"), np.array([4, 4], "int32")
        if max_new_tokens is None:  # a Python int, fixed when compiling
            return jax.jit(run, static_argnums=2).lower(token_ids, lengths, 40).compile().as_text()
        return jax.jit(run).lower(token_ids, lengths, max_new_tokens).compile().as_text()

    def trip_counts(text):
        return re.findall(r'"known_trip_count":\{"n":"(\d+)"\}', text)

    assert trip_counts(compiled_loop(())) == [str(steps_between_checks(40, ()))]  # 3 x 14
    assert trip_counts(compiled_loop((), num_beams=2)) == ["14"]
    assert "known_trip_count" not in compiled_loop((3,))
    assert "known_trip_count" not in compiled_loop((3,), num_beams=2)
    # A run-time max_new_tokens (an exported signature's input) may end rows long before the
    # buffer: every step is checked.
    assert "known_trip_count" not in compiled_loop((), max_new_tokens=np.int32(40))


def test_compiled_loop_equals_eager():
    prompts = [[1, 2, 3], [4]]
    token_ids = np.zeros((2, 3 + 7), "int32")
    token_ids[0, :3], token_ids[1, :1] = prompts[0], prompts[1]
    lengths = np.array([3, 1], "int32")

    def run(token_ids, lengths):
        return sample_loop(toy_step, token_ids, lengths, ops.zeros((2,)), RandomSampler(), 5, 7,
                           pad_token_id=10)

    compiled = compile_stateful(run, keras.Model())(token_ids, lengths)
    np.testing.assert_array_equal(ops.convert_to_numpy(compiled), decode(prompts, 7))
