"""The decode loop shared by every generative model, compiled once per shape.

A model hands in `step_fn(token_ids [batch, 1], cache, index) -> (logits [batch,
vocab], cache)`, which runs one position against a preallocated key/value cache.
The loop writes one token per iteration into a fixed `[batch, total_length]`
buffer; rows may have prompts of different lengths (right-padded): while a
row's index is still inside its prompt, the prompt token is kept and the
sampled one discarded, so every row sees its own positions, as if decoded alone.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import keras
from keras import ops

from keras_llm.generation.samplers import BeamSampler, Sampler

StepFn = Callable[..., tuple]
# Positions decoded between two host-side checks of a stop condition (see sample_loop).
MAX_STEPS_PER_CHECK = 16


def _column(token_ids, index):
    """`token_ids[:, index]` for a traced `index`."""
    return ops.squeeze(ops.slice(token_ids, [0, index], [ops.shape(token_ids)[0], 1]), axis=1)


def _is_stop(tokens, stop_token_ids: Sequence[int]):
    stop = ops.zeros_like(tokens, dtype="bool")
    for token in stop_token_ids:
        stop = ops.logical_or(stop, ops.equal(tokens, token))
    return stop


def sample_loop(
    step_fn: StepFn,
    token_ids,
    prompt_lengths,
    cache,
    sampler: Sampler,
    seed,
    max_new_tokens: int,
    stop_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
    steps_per_check: int | None = None,
):
    """Greedy or random decoding into `token_ids` `[batch, total]` from each row's prompt end.

    Args:
        step_fn: `(token_ids [batch, 1], cache, index) -> (logits, cache)`; the
            logits predict position `index + 1`.
        token_ids: int32 `[batch, total]`, prompts right-padded.
        prompt_lengths: int32 `[batch]`, at least 1.
        cache: the model's cache after the prompt was run through it.
        sampler: picks each token from the float32 logits.
        seed: int32 scalar for random samplers.
        max_new_tokens: tokens to add after each row's prompt.
        stop_token_ids: a row ends after emitting one of these; later positions get
            `pad_token_id`.
        pad_token_id: written after a row's end.
        steps_per_check: positions decoded between two checks of whether every row
            has ended; the output does not depend on it. `None`: if `max_new_tokens`
            is a Python int, `steps_between_checks(max_new_tokens, stop_token_ids)`;
            if it is a tensor (rows may end well before the buffer does), 1.

    Returns:
        The filled `token_ids`.
    """
    total_length = token_ids.shape[1]
    row_end = prompt_lengths + max_new_tokens
    start = ops.min(prompt_lengths)
    done = ops.zeros_like(prompt_lengths, dtype="bool")

    def cond(index, token_ids, cache, done):
        return ops.logical_and(index < total_length, ops.logical_not(ops.all(done)))

    def step(index, token_ids, cache, done):
        # The last check's steps may run past the end (see `steps`): those redo the last
        # position and keep the token already there.
        past_end = index >= total_length
        index = ops.minimum(index, total_length - 1)
        previous = ops.slice(token_ids, [0, index - 1], [ops.shape(token_ids)[0], 1])
        logits, cache = step_fn(previous, cache, index - 1)
        sampled = ops.cast(sampler.select(ops.cast(logits, "float32"), seed, index), "int32")
        in_prompt = index < prompt_lengths
        kept = ops.logical_or(in_prompt, past_end)
        finished = ops.logical_or(done, index >= row_end)
        token = ops.where(kept, _column(token_ids, index), sampled)
        token = ops.where(ops.logical_and(finished, ops.logical_not(kept)), pad_token_id, token)
        newly_stopped = ops.logical_and(ops.logical_not(in_prompt), _is_stop(token, stop_token_ids))
        done = ops.logical_or(ops.logical_or(finished, newly_stopped), index + 1 >= row_end)
        token_ids = ops.slice_update(token_ids, [0, index], ops.expand_dims(token, 1))
        return index + 1, token_ids, cache, done

    steps_per_check = _resolve_steps_per_check(steps_per_check, max_new_tokens, stop_token_ids)
    _, token_ids, _, done = _checked_while_loop(
        cond, step, (start, token_ids, cache, done), steps_per_check)
    return _pad_after_done(token_ids, row_end, pad_token_id)


def _resolve_steps_per_check(steps_per_check, max_new_tokens, stop_token_ids) -> int:
    if steps_per_check is not None:
        return steps_per_check
    if isinstance(max_new_tokens, numbers.Integral):
        return steps_between_checks(int(max_new_tokens), stop_token_ids)
    return 1


def _checked_while_loop(cond, step, state, steps_per_check: int):
    """`while cond(*state): state = step(*state)`, testing `cond` every `steps_per_check` steps.

    `step` must leave the output unchanged when run past the end (up to
    `steps_per_check - 1` extra times).
    """
    if steps_per_check == 1:
        return ops.while_loop(cond, step, state)

    def steps(*state):
        # A loop whose trip count is known when compiling: XLA's GPU runtime runs it without
        # copying a predicate to the host after every token (a wait for the device), so the
        # host queues the next steps' kernels while the device works.
        return ops.fori_loop(0, steps_per_check, lambda _, state: step(*state), state)

    return ops.while_loop(cond, steps, state)


def steps_between_checks(max_new_tokens: int, stop_token_ids: Sequence[int]) -> int:
    """How many positions `sample_loop` decodes between two checks of its stop condition.

    With stop tokens, every position (a row may end at any token, and steps after the
    last row ended would be wasted). Without, the loop can only end at the rows' ends:
    checks every `MAX_STEPS_PER_CHECK` positions or fewer, spread evenly, so that a batch
    of equal-length prompts ends exactly at its last check; ragged prompts waste fewer
    than `MAX_STEPS_PER_CHECK` steps.
    """
    if stop_token_ids:
        return 1
    checks = -(-max_new_tokens // MAX_STEPS_PER_CHECK)
    return -(-max_new_tokens // checks)


def _pad_after_done(token_ids, row_end, pad_token_id):
    """Pads every position past a row's end (the loop may stop before writing them)."""
    positions = ops.arange(token_ids.shape[1], dtype="int32")[None, :]
    return ops.where(positions < row_end[:, None], token_ids, pad_token_id)


def _gather_rows(tensor, indices):
    return ops.take(tensor, indices, axis=0)


def beam_search_loop(
    step_fn: StepFn,
    token_ids,
    prompt_lengths,
    cache,
    sampler: BeamSampler,
    max_new_tokens: int,
    stop_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
    steps_per_check: int | None = None,
):
    """Beam search; the same arguments as `sample_loop` (no seed), returns the best beam.

    The batch inside is `batch * num_beams` (row `b * num_beams + k` is beam `k`
    of row `b`); every step keeps the `num_beams` best of all `num_beams * vocab`
    extensions and reorders the token buffer and the cache to follow them.
    """
    beams = sampler.num_beams
    batch, total_length = token_ids.shape[0], token_ids.shape[1]

    def expand(x):
        return ops.repeat(x, beams, axis=0)

    token_ids = expand(token_ids)
    prompt_lengths = expand(prompt_lengths)
    cache = keras.tree.map_structure(expand, cache)
    row_end = prompt_lengths + max_new_tokens
    # Only beam 0 is alive at first, so the first expansions are not duplicated.
    scores = ops.tile(ops.array([0.0] + [-1e9] * (beams - 1), "float32"), (batch,))
    generated_length = ops.zeros_like(prompt_lengths)
    done = ops.zeros_like(prompt_lengths, dtype="bool")
    start = ops.min(prompt_lengths)
    row_offsets = ops.repeat(ops.arange(batch, dtype="int32") * beams, beams)

    def cond(index, token_ids, cache, scores, generated_length, done):
        return ops.logical_and(index < total_length, ops.logical_not(ops.all(done)))

    def body(index, token_ids, cache, scores, generated_length, done):
        # As in `sample_loop`, steps past the end redo the last position and keep its token;
        # every row has ended by then, so the scores do not change either.
        past_end = index >= total_length
        index = ops.minimum(index, total_length - 1)
        previous = ops.slice(token_ids, [0, index - 1], [batch * beams, 1])
        logits, cache = step_fn(previous, cache, index - 1)
        log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        vocab_size = log_probs.shape[-1]
        vocab = ops.arange(vocab_size, dtype="int32")[None, :]
        in_prompt = index < prompt_lengths
        finished = ops.logical_or(done, index >= row_end)
        # Rows still in their prompt and finished beams have one allowed continuation.
        forced_token = ops.where(in_prompt, _column(token_ids, index), pad_token_id)
        forced = ops.logical_or(in_prompt, finished)
        step_scores = ops.where(
            forced[:, None],
            ops.where(vocab == forced_token[:, None], 0.0, -1e9),
            log_probs,
        )
        candidates = ops.reshape(scores[:, None] + step_scores, (batch, beams * vocab_size))
        top_scores, top_indices = ops.top_k(candidates, beams)
        source_beam = ops.reshape(top_indices // vocab_size, (-1,))
        token = ops.cast(ops.reshape(top_indices % vocab_size, (-1,)), "int32")
        source_rows = row_offsets + ops.cast(source_beam, "int32")

        token_ids = _gather_rows(token_ids, source_rows)
        cache = keras.tree.map_structure(lambda c: _gather_rows(c, source_rows), cache)
        in_prompt = _gather_rows(in_prompt, source_rows)
        finished = _gather_rows(finished, source_rows)
        generated_length = _gather_rows(generated_length, source_rows) + ops.cast(
            ops.logical_not(ops.logical_or(in_prompt, finished)), "int32"
        )
        newly_stopped = ops.logical_and(ops.logical_not(in_prompt), _is_stop(token, stop_token_ids))
        done = ops.logical_or(ops.logical_or(finished, newly_stopped), index + 1 >= row_end)
        token = ops.where(past_end, _column(token_ids, index), token)
        token_ids = ops.slice_update(token_ids, [0, index], ops.expand_dims(token, 1))
        return index + 1, token_ids, cache, ops.reshape(top_scores, (-1,)), generated_length, done

    steps_per_check = _resolve_steps_per_check(steps_per_check, max_new_tokens, stop_token_ids)
    _, token_ids, _, scores, generated_length, _ = _checked_while_loop(
        cond, body, (start, token_ids, cache, scores, generated_length, done), steps_per_check
    )
    length = ops.maximum(ops.cast(generated_length, "float32"), 1.0)
    normalized = ops.reshape(scores / length**sampler.length_penalty, (batch, beams))
    best = ops.argmax(normalized, axis=-1)
    best_rows = ops.arange(batch, dtype="int32") * beams + ops.cast(best, "int32")
    token_ids = _gather_rows(token_ids, best_rows)
    return _pad_after_done(token_ids, _gather_rows(row_end, best_rows), pad_token_id)


def compile_stateful(fn: Callable, model: keras.Model, jit_compile: bool = True) -> Callable:
    """Compiles `fn(*tensors)`, which reads `model`'s weights, for the current backend.

    TensorFlow: one `tf.function` with XLA; it retraces only for new shapes.
    JAX: `jax.jit` with the weights passed in as arguments (not baked-in
    constants), so training the model after a first `generate` is seen by the
    next one. Other backends run eagerly.
    """
    backend = keras.backend.backend()
    if not jit_compile or backend not in ("tensorflow", "jax"):
        return fn
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)

    import jax

    variables = model.variables

    def stateless(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return fn(*args)

    compiled = jax.jit(stateless)
    return lambda *args: compiled([v.value for v in variables], *args)
