import numpy as np
import pytest

from keras_llm.models import Gpt, GptCausalLM

TINY = dict(vocab_size=97, num_layers=2, num_heads=2, hidden_size=16, intermediate_size=32,
            max_sequence_length=24, dropout=0.0)


@pytest.fixture(scope="module")
def lm():
    import keras

    keras.utils.set_random_seed(3)
    return GptCausalLM(Gpt(**TINY))


def test_rows_of_different_lengths_match_decoding_each_alone(lm):
    prompts = [[5, 6, 7, 8], [9, 10], [11]]
    batched = lm.generate(prompts, max_new_tokens=5)
    assert batched.shape == (3, 9)
    for row, prompt in zip(batched, prompts, strict=True):
        alone = lm.generate([prompt], max_new_tokens=5)[0]
        np.testing.assert_array_equal(row[: len(prompt) + 5], alone)
        np.testing.assert_array_equal(row[: len(prompt)], prompt)
        assert (row[len(prompt) + 5 :] == 0).all()


def test_greedy_equals_argmax_of_full_forward(lm):
    prompt = np.array([[4, 8, 15, 16]])
    out = lm.generate(prompt, max_new_tokens=4)
    sequence = prompt
    for _ in range(4):
        logits = np.asarray(lm({"token_ids": sequence}))
        sequence = np.concatenate([sequence, logits[:, -1].argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(out, sequence)


def test_second_call_with_same_shapes_does_not_recompile(lm):
    lm.generate(np.array([[1, 2, 3]]), max_new_tokens=4, strategy="top_k", top_k=5)
    traces = lm.generate_trace_count
    lm.generate(np.array([[7, 8, 9]]), max_new_tokens=4, strategy="top_k", top_k=5, seed=9)
    lm.generate([[6, 7, 8]], max_new_tokens=4, strategy="top_k", top_k=5)
    assert lm.generate_trace_count == traces


def test_beam_one_equals_greedy_and_beams_score_at_least_as_well(lm):
    prompts = [[5, 6, 7], [9]]
    greedy = lm.generate(prompts, max_new_tokens=5)
    np.testing.assert_array_equal(
        lm.generate(prompts, max_new_tokens=5, strategy="beam", num_beams=1), greedy)

    def log_likelihood(sequence, start):
        logits = np.asarray(lm({"token_ids": sequence[None]}), "float64")[0]
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return sum(log_probs[i - 1, sequence[i]] for i in range(start, len(sequence)))

    beams = lm.generate(prompts, max_new_tokens=5, strategy="beam", num_beams=4,
                        length_penalty=0.0)
    for prompt, g, b in zip(prompts, greedy, beams, strict=True):
        end = len(prompt) + 5
        assert log_likelihood(b[:end], len(prompt)) >= log_likelihood(g[:end], len(prompt)) - 1e-4


def test_sampling_is_reproducible_per_seed(lm):
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    a = lm.generate(prompt, max_new_tokens=6, strategy="top_p", top_p=0.95, seed=1)
    np.testing.assert_array_equal(
        a, lm.generate(prompt, max_new_tokens=6, strategy="top_p", top_p=0.95, seed=1))
    b = lm.generate(prompt, max_new_tokens=6, strategy="random", temperature=2.0, seed=2)
    assert not np.array_equal(a, b)


def test_stop_tokens_end_each_row_on_its_own(lm):
    prompts = [[5, 6, 7, 8], [9, 10]]
    free = lm.generate(prompts, max_new_tokens=6)
    stop = int(free[0, 4])  # Row 0's first new token: row 0 stops at once.
    out = lm.generate(prompts, max_new_tokens=6, stop_token_ids=[stop], pad_token_id=96)
    for row, prompt in enumerate(prompts):
        new = list(free[row, len(prompt) : len(prompt) + 6])
        kept = len(prompt) + (new.index(stop) + 1 if stop in new else 6)
        np.testing.assert_array_equal(out[row, :kept], free[row, :kept])
        assert (out[row, kept:] == 96).all()
    assert out[0, 4] == stop and (out[0, 5:] == 96).all()


@pytest.mark.parametrize(
    "prompts, kwargs, match",
    [
        ([[1, 2], []], {}, "Prompt 1 is empty"),
        ([list(range(20))], {"max_new_tokens": 5}, "exceeds the model's 24 positions"),
        ([[1, 2]], {"max_new_tokens": 0}, "positive integer"),
        ([[1, 200]], {}, "token id 200, outside the vocabulary"),
        (["hello"], {}, "need a tokenizer"),
        (np.ones((2, 2, 2), "int32"), {}, r"\[batch, prompt_len\]"),
    ],
)
def test_bad_generate_inputs(lm, prompts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        lm.generate(prompts, **{"max_new_tokens": 3, **kwargs})
