"""Empty, very long, non-UTF-8 and mixed inputs; batches of 1 and 256; concurrent calls."""

from __future__ import annotations

import concurrent.futures
import unicodedata

import numpy as np
import pytest
import tensorflow as tf

from tests.export.conftest import SEQUENCE_LENGTH

LONG = "the acting is great but the story is boring. " * 200


def _strings(values):
    return tf.constant(np.array(values, dtype=object))


def test_empty_long_and_mixed_texts(classifier_export):
    signature = classifier_export.signature()
    texts = ["", LONG, "a fine film", "  \t  "]
    outputs = signature(text=_strings(texts))
    assert outputs["logits"].shape == (4, 3)
    assert np.isfinite(outputs["logits"].numpy()).all()
    # Long texts are truncated to the sequence length: the same as their first tokens.
    pre = classifier_export.preprocessor
    ids = pre([LONG])["token_ids"].numpy()
    assert ids.shape == (1, SEQUENCE_LENGTH) and ids[0, -1] == pre.sep_token_id
    # Each row is independent of the others in the batch (padding is masked).
    alone = signature(text=_strings(["a fine film"]))
    np.testing.assert_allclose(outputs["logits"][2], alone["logits"][0], atol=1e-5)


def test_invalid_utf8_is_a_clear_error(classifier_export, gpt_export):
    with pytest.raises(tf.errors.InvalidArgumentError, match="not valid UTF-8"):
        classifier_export.signature()(text=_strings([b"ok", b"\xff\xfe"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not valid UTF-8"):
        gpt_export.signature()(prompt=_strings([b"\xc3("]), max_new_tokens=tf.constant(1))


@pytest.mark.parametrize("batch", [1, 256])
def test_batch_sizes(embedding_export, batch):
    texts = [f"film {i} " * (i % 7) for i in range(batch)]
    outputs = embedding_export.signature()(text=_strings(texts))["embedding"].numpy()
    assert outputs.shape == (batch, 32)
    np.testing.assert_allclose(np.linalg.norm(outputs, axis=-1), 1.0, atol=1e-5)


def test_question_answerer_spans(qa_export):
    questions = ["what is great?", "", "who?"]
    contexts = ["the acting is great but the story is boring.", "a film.", ""]
    outputs = qa_export.signature()(question=_strings(questions), context=_strings(contexts))
    start, end = outputs["answer_start"].numpy(), outputs["answer_end"].numpy()
    assert (start[:2] <= end[:2]).all() and (end[:2] - start[:2] < 30).all()
    assert start[2] == -1 and outputs["answer_text"].numpy()[2] == b""
    assert outputs["answer_score"].numpy()[2] == -np.inf
    long = qa_export.signature()(question=_strings(["what?"]), context=_strings([LONG]))
    assert long["start_logits"].shape == (1, SEQUENCE_LENGTH)


def test_token_classifier_tokens(tagger_export):
    outputs = tagger_export.signature()(text=_strings(["a fine film", ""]))
    tokens = outputs["tokens"].numpy()
    tokenizer = tagger_export.preprocessor.tokenizer
    pieces = [tokenizer.id_to_token(i).encode() for i in tokenizer("a fine film").numpy()]
    expected = [b"[CLS]"] + pieces + [b"[SEP]"]
    assert tokens[0, :len(expected)].tolist() == expected
    assert tokens[0, len(expected):].tolist() == [b""] * (SEQUENCE_LENGTH - len(expected))
    assert tokens[1, :3].tolist() == [b"[CLS]", b"[SEP]", b""]
    assert outputs["label_names"].shape == (2, SEQUENCE_LENGTH)


def test_concurrent_calls_match_sequential(classifier_export):
    signature = classifier_export.signature()
    batches = [[f"film number {i}", LONG[: 10 * i], ""] for i in range(16)]
    sequential = [signature(text=_strings(b))["logits"].numpy() for b in batches]
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        concurrent_results = list(pool.map(
            lambda b: signature(text=_strings(b))["logits"].numpy(), batches))
    for a, b in zip(sequential, concurrent_results, strict=True):
        np.testing.assert_array_equal(a, b)


def test_offsets_point_into_the_original_text(tagger_export, qa_export):
    text = "A Gripping FILM, naïve and Café-crème!"
    outputs = tagger_export.signature()(text=_strings([text]))
    raw = text.encode()
    checked = 0
    for token, start, end in zip(outputs["tokens"].numpy()[0], outputs["start_offsets"].numpy()[0],
                                 outputs["end_offsets"].numpy()[0], strict=True):
        if token in (b"[CLS]", b"[SEP]", b""):
            assert start == end == -1
            continue
        original = unicodedata.normalize("NFD", raw[start:end].decode()).lower()
        original = "".join(c for c in original if unicodedata.category(c) != "Mn")
        if token != b"[UNK]":
            assert original == token.decode().removeprefix("##"), (token, original)
            checked += 1
    assert checked >= 3

    context = "The Acting is GREAT, but the Story is boring."
    answer = qa_export.signature()(question=_strings(["What is great?"]),
                                   context=_strings([context]))
    text = answer["answer_text"].numpy()[0].decode()
    begin, finish = answer["answer_start_offset"].numpy()[0], answer["answer_end_offset"].numpy()[0]
    assert text and text == context.encode()[begin:finish].decode() and text in context
