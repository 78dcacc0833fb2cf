"""Serving functions for each task model: raw strings in, named tensors out, all in-graph.

Every builder returns `{signature_key: (python_fn, [tf.TensorSpec, ...])}`; the argument names
and the specs' names are the signature's input names, the returned dict's keys its output names.
Only TensorFlow and tensorflow-text ops are used: TF Serving's stock model server links
tensorflow-text's op library and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from keras_llm.generation import get_sampler, sample_loop
from keras_llm.generation.samplers import BeamSampler
from keras_llm.models import BertContrastive

Signature = tuple[Callable[..., dict], list[tf.TensorSpec]]

#: QA answers are at most this many word pieces long (SQuAD's `max_answer_length`).
MAX_ANSWER_TOKENS = 30


def _string_spec(name: str) -> tf.TensorSpec:
    return tf.TensorSpec([None], tf.string, name=name)


def _id_specs() -> list[tf.TensorSpec]:
    return [tf.TensorSpec([None, None], tf.int32, name=n)
            for n in ("token_ids", "segment_ids", "padding_mask")]


def _float32(x) -> tf.Tensor:
    # Mixed-precision models compute in (b)float16; clients always get float32.
    return tf.cast(x, tf.float32)


def _label_outputs(label_ids: tf.Tensor, label_names: list[str] | None) -> dict:
    outputs = {"label_ids": tf.cast(label_ids, tf.int32)}
    if label_names:
        outputs["label_names"] = tf.gather(tf.constant(label_names, tf.string), label_ids)
    return outputs


def _bert_inputs(token_ids, segment_ids, padding_mask) -> dict:
    return {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}


def _text_and_ids(preprocess_args: list[str], preprocessor, head: Callable,
                  text_outputs: Callable | None = None) -> dict[str, Signature]:
    """The `text` (strings) and `token_ids` signatures sharing one head function.

    `text_outputs(texts, inputs, outputs)` adds what only the raw strings can give (offsets
    into them, answer substrings) to the text signature's outputs.
    """

    def from_ids(token_ids, segment_ids, padding_mask):
        return head(_bert_inputs(token_ids, segment_ids, padding_mask))

    def with_text_outputs(texts, inputs):
        outputs = head(inputs)
        if text_outputs is not None:
            outputs.update(text_outputs(texts, inputs, outputs))
        return outputs

    signatures: dict[str, Signature] = {"token_ids": (from_ids, _id_specs())}
    if preprocessor is not None:
        if len(preprocess_args) == 1:

            def from_text(text):
                return with_text_outputs((text,), preprocessor(text))

        else:

            def from_text(*texts):
                return with_text_outputs(texts, preprocessor(tuple(texts)))

        specs = [_string_spec(name) for name in preprocess_args]
        signatures["text"] = (_named(from_text, preprocess_args), specs)
    return signatures


def _named(fn: Callable, names: list[str]) -> Callable:
    """Gives `fn(*args)` the positional parameter names `names` (signature input names)."""
    if fn.__code__.co_argcount == len(names) and not fn.__code__.co_flags & 0x04:
        return fn
    source_args = ", ".join(names)
    namespace: dict[str, Any] = {"_fn": fn}
    exec(f"def serve({source_args}):\n    return _fn({source_args})\n", namespace)  # noqa: S102
    return namespace["serve"]


# --- BERT task models ------------------------------------------------------------------------


def classifier_signatures(model, preprocessor, pair: bool = False) -> dict[str, Signature]:
    """`BertClassifier`: logits, probabilities / predictions, label ids and names."""
    regression = model.num_classes == 1

    def head(inputs):
        logits = _float32(model(inputs, training=False))
        if regression:
            return {"logits": logits, "predictions": logits[:, 0]}
        outputs = {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}
        outputs.update(_label_outputs(tf.argmax(logits, axis=-1, output_type=tf.int32),
                                      model.label_names))
        return outputs

    return _text_and_ids(["text", "text_pair"] if pair else ["text"], preprocessor, head)


def embedding_signatures(model, preprocessor) -> dict[str, Signature]:
    """L2-normalised sentence embeddings: a `BertContrastive`'s own (its pooling and
    projection), or for a `Bert` backbone the mean of `sequence_output` over real tokens
    (as sentence-transformers pools MiniLM)."""

    def head(inputs):
        if isinstance(model, BertContrastive):  # It pools, projects and normalises itself.
            return {"embedding": _float32(model(inputs, training=False))}
        sequence = _float32(model(inputs, training=False)["sequence_output"])
        mask = tf.cast(inputs["padding_mask"], tf.float32)[:, :, None]
        # Clamped like sentence-transformers, so an all-padding row gives zeros, not NaN.
        mean = tf.reduce_sum(sequence * mask, axis=1) / tf.maximum(
            tf.reduce_sum(mask, axis=1), 1e-9)
        return {"embedding": tf.math.l2_normalize(mean, axis=-1, epsilon=1e-24)}

    return _text_and_ids(["text"], preprocessor, head)


def token_classifier_signatures(model, preprocessor) -> dict[str, Signature]:
    """`BertTokenClassifier`: per-token label ids (and names), and the word pieces."""
    vocabulary = None
    if preprocessor is not None:
        vocabulary = tf.constant(preprocessor.tokenizer.get_vocabulary(), tf.string)

    def head(inputs):
        logits = _float32(model(inputs, training=False))
        outputs = {"logits": logits}
        outputs.update(_label_outputs(tf.argmax(logits, axis=-1, output_type=tf.int32),
                                      model.label_names))
        if vocabulary is not None:
            real = tf.cast(inputs["padding_mask"], tf.bool)
            tokens = tf.gather(vocabulary, inputs["token_ids"])
            outputs["tokens"] = tf.where(real, tokens, tf.constant(""))
        return outputs

    def offsets(texts, inputs, outputs):
        """Each word piece's [start, end) byte span in `text` (-1 at [CLS], [SEP], padding)."""
        _, starts, ends = preprocessor.tokenizer.tokenize_with_offsets(texts[0])
        length = inputs["token_ids"].shape[1] or tf.shape(inputs["token_ids"])[1]
        return {name: _packed_positions(values, length)
                for name, values in (("start_offsets", starts), ("end_offsets", ends))}

    return _text_and_ids(["text"], preprocessor, head, offsets)


def _packed_positions(values: tf.RaggedTensor, length) -> tf.Tensor:
    """Per-token values of one segment laid out as `[CLS] tokens [SEP] pad`: -1 off tokens."""
    values = tf.cast(values, tf.int32)[:, : length - 2]
    batch = values.nrows()
    dense = values.to_tensor(-1, shape=tf.stack([batch, tf.cast(length - 1, tf.int64)]))
    return tf.concat([tf.fill(tf.stack([tf.cast(batch, tf.int32), 1]), -1), dense], axis=1)


def best_span(start_logits, end_logits, context_mask, max_answer_tokens=MAX_ANSWER_TOKENS):
    """Best `(start, end, score)` per row with `start <= end < start + max_answer_tokens`,
    both inside `context_mask`; score = start logit + end logit (SQuAD's rule)."""
    seq = tf.shape(start_logits)[1]
    positions = tf.range(seq)
    offset = positions[None, :] - positions[:, None]  # [start, end] -> end - start
    allowed = tf.logical_and(offset >= 0, offset < max_answer_tokens)[None]
    allowed = tf.logical_and(allowed, context_mask[:, :, None])
    allowed = tf.logical_and(allowed, context_mask[:, None, :])
    scores = start_logits[:, :, None] + end_logits[:, None, :]
    scores = tf.where(allowed, scores, tf.constant(-1e9, scores.dtype))
    flat = tf.reshape(scores, [tf.shape(scores)[0], -1])
    best = tf.argmax(flat, axis=-1, output_type=tf.int32)
    return best // seq, best % seq, tf.reduce_max(flat, axis=-1)


def question_answerer_signatures(model, preprocessor) -> dict[str, Signature]:
    """`BertQuestionAnswerer`: span logits, and the best answer span as text with its score."""
    tokenizer = preprocessor.tokenizer if preprocessor is not None else None
    sep_id = tokenizer.special_token_id("sep") if tokenizer is not None else None

    def head(inputs):
        outputs = model(inputs, training=False)
        start = _float32(outputs["start_logits"])
        end = _float32(outputs["end_logits"])
        result = {"start_logits": start, "end_logits": end}
        if tokenizer is None:
            return result
        token_ids = inputs["token_ids"]
        # The context is segment 1, without its closing [SEP] and the padding.
        context = tf.logical_and(tf.equal(inputs["segment_ids"], 1),
                                 tf.cast(inputs["padding_mask"], tf.bool))
        context = tf.logical_and(context, tf.not_equal(token_ids, sep_id))
        span_start, span_end, score = best_span(start, end, context)
        positions = tf.range(tf.shape(token_ids)[1])[None, :]
        in_span = tf.logical_and(positions >= span_start[:, None], positions <= span_end[:, None])
        has_context = tf.reduce_any(context, axis=-1)
        in_span = tf.logical_and(in_span, has_context[:, None])
        answer = tokenizer.detokenize(tf.ragged.boolean_mask(token_ids, in_span))
        result.update({
            "answer_text": answer,
            "answer_score": tf.where(has_context, score, tf.constant(float("-inf"))),
            "answer_start": tf.where(has_context, span_start, -1),
            "answer_end": tf.where(has_context, span_end, -1),
        })
        return result

    def original_answer(texts, inputs, outputs):
        """The answer as the context's own substring (case and accents kept), from offsets."""
        context_text = texts[1]
        _, starts, ends = tokenizer.tokenize_with_offsets(context_text)
        # Truncation keeps the context's first tokens, so its i-th packed token is its i-th.
        first = tf.argmax(tf.cast(tf.equal(inputs["segment_ids"], 1), tf.int32), axis=1,
                          output_type=tf.int32)
        found = outputs["answer_start"] >= 0
        rows = tf.range(tf.shape(first)[0])
        start_index = tf.maximum(outputs["answer_start"] - first, 0)
        end_index = tf.maximum(outputs["answer_end"] - first, 0)
        starts, ends = starts.to_tensor(0), ends.to_tensor(0)
        begin = tf.gather_nd(starts, tf.stack([rows, start_index], axis=1))
        finish = tf.gather_nd(ends, tf.stack([rows, end_index], axis=1))
        text = tf.strings.substr(context_text, tf.cast(begin, tf.int32),
                                 tf.cast(finish - begin, tf.int32))
        return {"answer_text": tf.where(found, text, tf.constant("")),
                "answer_start_offset": tf.where(found, tf.cast(begin, tf.int32), -1),
                "answer_end_offset": tf.where(found, tf.cast(finish, tf.int32), -1)}

    return _text_and_ids(["question", "context"], preprocessor, head, original_answer)


# --- Shared by the generation signatures ----------------------------------------------------


def _export_sampler(strategy, temperature, top_k, top_p):
    """`(sampler, takes a seed input)`; beam search is refused (it is not exported)."""
    sampler = get_sampler(strategy, temperature, top_k, top_p)
    if isinstance(sampler, BeamSampler):
        raise ValueError("Beam search is not exported; use greedy or a sampling strategy.")
    return sampler, strategy != "greedy"


def _checked_new_tokens(new_tokens, cap: int):
    """`new_tokens` once asserted to lie in `[1, cap]` (the export-time maximum)."""
    check = tf.debugging.assert_less_equal(
        new_tokens, cap, message=f"max_new_tokens is larger than the export-time maximum of {cap}")
    positive = tf.debugging.assert_positive(new_tokens, message="max_new_tokens must be >= 1")
    with tf.control_dependencies([check, positive]):
        return tf.identity(new_tokens)


def _dense_ids(ids, pad_id: int, what: str):
    """Ragged (or dense) token ids -> `(right-padded [batch, width], lengths)`, refusing empty
    rows."""
    if isinstance(ids, tf.Tensor):  # A tokenizer with a fixed sequence_length.
        ids = tf.RaggedTensor.from_tensor(ids)
    lengths = tf.cast(ids.row_lengths(), tf.int32)
    empty = tf.debugging.assert_positive(
        lengths, message=f"Every {what} needs at least one token; got an empty {what}.")
    with tf.control_dependencies([empty]):
        return ids.to_tensor(pad_id), lengths


# --- GPT generation --------------------------------------------------------------------------


def causal_lm_signatures(
    model,
    tokenizer,
    max_new_tokens: int = 64,
    max_prompt_length: int | None = None,
    strategy: str = "greedy",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    jit_compile: bool = False,
) -> dict[str, Signature]:
    """`GptCausalLM`: prompts in, prompt + continuation out, the decode loop in the graph.

    The token buffer has the static length `max_prompt_length + max_new_tokens` (the export-
    time cap); the `max_new_tokens` input only moves each row's end, so one graph serves any
    request up to the cap. Prompts longer than `max_prompt_length` tokens keep their last
    tokens. Random strategies take an int32 `seed` input (same seed, same output).
    """
    backbone = model.backbone
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1; got {max_new_tokens}.")
    if max_prompt_length is None:
        max_prompt_length = backbone.max_sequence_length - max_new_tokens
    total_length = max_prompt_length + max_new_tokens
    if max_prompt_length < 1 or total_length > backbone.max_sequence_length:
        raise ValueError(
            f"max_prompt_length={max_prompt_length} + max_new_tokens={max_new_tokens} must fit "
            f"the model's {backbone.max_sequence_length} positions, with at least one prompt "
            "token."
        )
    sampler, random = _export_sampler(strategy, temperature, top_k, top_p)
    end_id = getattr(tokenizer, "end_token_id", None) if tokenizer is not None else None
    stop_ids = (end_id,) if end_id is not None else ()
    pad_id = end_id if end_id is not None else 0
    cap = max_new_tokens

    def step(token_ids, cache, index):
        hidden, cache = backbone.call_with_cache(token_ids, cache, index)
        return model.logits(hidden)[:, -1, :], cache

    def decode(token_ids, prompt_lengths, new_tokens, seed):
        cache = backbone.initial_cache(tf.shape(token_ids)[0], total_length)
        # Prefill every prompt position at once; positions past a row's prompt hold padding
        # and are rewritten by the loop before any later position reads them.
        _, cache = backbone.call_with_cache(token_ids[:, :max_prompt_length], cache, 0)
        return sample_loop(step, token_ids, prompt_lengths, cache, sampler, seed, new_tokens,
                           stop_ids, pad_id)

    decode = tf.function(decode, jit_compile=jit_compile, autograph=False)

    def generate_ids(token_ids, prompt_lengths, new_tokens, seed):
        """Right-padded ids -> `[batch, longest prompt + new_tokens]` like `generate`."""
        new_tokens = _checked_new_tokens(new_tokens, cap)
        batch = tf.shape(token_ids)[0]
        buffer = tf.concat([token_ids, tf.fill([batch, total_length - tf.shape(token_ids)[1]],
                                               tf.constant(pad_id, tf.int32))], axis=1)
        buffer = tf.ensure_shape(buffer, [None, total_length])
        output = decode(buffer, prompt_lengths, new_tokens, seed)
        width = tf.reduce_max(prompt_lengths) + new_tokens
        return output[:, :width]

    def finish(output, prompt_lengths, new_tokens) -> dict:
        positions = tf.range(tf.shape(output)[1])[None, :]
        after_prompt = positions >= prompt_lengths[:, None]
        row_end = prompt_lengths + new_tokens
        stop = tf.zeros_like(output, tf.bool)
        for token in stop_ids:
            stop = tf.logical_or(stop, tf.equal(output, token))
        stop = tf.logical_and(stop, after_prompt)
        # Text: the prompt, then the continuation up to (excluding) the first stop token.
        first_stop = tf.reduce_min(tf.where(stop, positions, tf.shape(output)[1]), axis=1)
        keep = tf.logical_and(positions < first_stop[:, None], positions < row_end[:, None])
        outputs = {"generated_token_ids": output,
                   "generated_lengths": tf.reduce_sum(tf.cast(keep, tf.int32), axis=1)}
        if tokenizer is not None:
            text = tokenizer.detokenize(tf.ragged.boolean_mask(output, keep))
            # A continuation may end inside a UTF-8 character: replace, like `generate`.
            outputs["generated_text"] = tf.strings.unicode_transcode(
                text, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        return outputs

    def seed_of(seed):
        return seed if random else tf.constant(0, tf.int32)

    def from_ids(token_ids, prompt_lengths, max_new_tokens, seed=None):
        output = generate_ids(token_ids, prompt_lengths, max_new_tokens, seed_of(seed))
        return finish(output, prompt_lengths, max_new_tokens)

    def from_text(prompt, max_new_tokens, seed=None):
        ids = tokenizer(prompt)
        if isinstance(ids, tf.Tensor):  # A tokenizer with a fixed sequence_length.
            ids = tf.RaggedTensor.from_tensor(ids)
        # Keep the end of an over-long prompt.
        dense, lengths = _dense_ids(ids[:, -max_prompt_length:], pad_id, "prompt")
        output = generate_ids(dense, lengths, max_new_tokens, seed_of(seed))
        return finish(output, lengths, max_new_tokens)

    scalar = [tf.TensorSpec([], tf.int32, name="max_new_tokens")]
    seed_spec = [tf.TensorSpec([], tf.int32, name="seed")] if random else []
    id_names = ["token_ids", "prompt_lengths", "max_new_tokens"] + (["seed"] if random else [])
    id_specs = [tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                tf.TensorSpec([None], tf.int32, name="prompt_lengths")] + scalar + seed_spec
    signatures: dict[str, Signature] = {"token_ids": (_named(from_ids, id_names), id_specs)}
    if tokenizer is not None:
        text_names = ["prompt", "max_new_tokens"] + (["seed"] if random else [])
        signatures["text"] = (_named(from_text, text_names),
                              [_string_spec("prompt")] + scalar + seed_spec)
    return signatures


# --- T5 generation ---------------------------------------------------------------------------


def seq2seq_lm_signatures(
    model,
    tokenizer,
    max_new_tokens: int = 64,
    max_input_length: int | None = None,
    strategy: str = "greedy",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    jit_compile: bool = False,
) -> dict[str, Signature]:
    """`T5Seq2SeqLM`: input strings in, generated strings out, the decode loop in the graph.

    The decoder buffer has the static length `1 + max_new_tokens` (the export-time cap);
    the `max_new_tokens` input ends rows earlier. Inputs longer than `max_input_length`
    tokens keep their first tokens (and lose their `</s>`). Random strategies take an int32
    `seed` input.
    """
    backbone = model.backbone
    if max_new_tokens < 1 or max_new_tokens + 1 > backbone.max_sequence_length:
        raise ValueError(
            f"max_new_tokens must be in [1, {backbone.max_sequence_length - 1}]; got "
            f"{max_new_tokens}.")
    max_input_length = max_input_length or backbone.max_sequence_length
    sampler, random = _export_sampler(strategy, temperature, top_k, top_p)
    stop_ids = (model.end_token_id,)
    pad_id, cap = model.pad_token_id, max_new_tokens
    decode = tf.function(model.make_decode_function(sampler, stop_ids),
                         jit_compile=jit_compile, autograph=False)

    def generate(encoder_ids, encoder_mask, new_tokens, seed) -> dict:
        new_tokens = _checked_new_tokens(new_tokens, cap)
        batch = tf.shape(encoder_ids)[0]
        decoder = tf.concat([tf.fill([batch, 1], tf.constant(model.decoder_start_token_id)),
                             tf.fill([batch, cap], tf.constant(pad_id))], axis=1)
        output = decode(encoder_ids, tf.cast(encoder_mask, tf.bool), decoder,
                        tf.ones([batch], tf.int32), seed, new_tokens)[:, 1:]
        output = output[:, :new_tokens]
        positions = tf.range(tf.shape(output)[1])[None, :]
        stop = tf.zeros_like(output, tf.bool)
        for token in stop_ids:
            stop = tf.logical_or(stop, tf.equal(output, token))
        first_stop = tf.reduce_min(tf.where(stop, positions, tf.shape(output)[1]), axis=1)
        keep = positions < first_stop[:, None]
        outputs = {"generated_token_ids": output,
                   "generated_lengths": tf.reduce_sum(tf.cast(keep, tf.int32), axis=1)}
        if tokenizer is not None:
            outputs["generated_text"] = tokenizer.detokenize(tf.ragged.boolean_mask(output, keep))
        return outputs

    def seed_of(seed):
        return seed if random else tf.constant(0, tf.int32)

    def from_ids(encoder_token_ids, encoder_padding_mask, max_new_tokens, seed=None):
        return generate(encoder_token_ids, encoder_padding_mask, max_new_tokens, seed_of(seed))

    def from_text(inputs, max_new_tokens, seed=None):
        ids = tokenizer(inputs)
        if isinstance(ids, tf.Tensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        dense, lengths = _dense_ids(ids[:, :max_input_length], pad_id, "input")
        mask = tf.range(tf.shape(dense)[1])[None, :] < lengths[:, None]
        return generate(dense, mask, max_new_tokens, seed_of(seed))

    scalar = [tf.TensorSpec([], tf.int32, name="max_new_tokens")]
    seed_spec = [tf.TensorSpec([], tf.int32, name="seed")] if random else []
    id_names = ["encoder_token_ids", "encoder_padding_mask", "max_new_tokens"] + (
        ["seed"] if random else [])
    id_specs = [tf.TensorSpec([None, None], tf.int32, name="encoder_token_ids"),
                tf.TensorSpec([None, None], tf.int32, name="encoder_padding_mask")]
    signatures: dict[str, Signature] = {
        "token_ids": (_named(from_ids, id_names), id_specs + scalar + seed_spec)}
    if tokenizer is not None:
        text_names = ["inputs", "max_new_tokens"] + (["seed"] if random else [])
        signatures["text"] = (_named(from_text, text_names),
                              [_string_spec("inputs")] + scalar + seed_spec)
    return signatures
