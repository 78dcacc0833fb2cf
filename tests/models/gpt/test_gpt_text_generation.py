"""Strings in, strings out, through the in-graph GPT-2 tokenizer."""

import numpy as np
import pytest

import keras_llm


@pytest.fixture(scope="module")
def lm(shared_data):
    tokenizer = keras_llm.tokenizers.BytePairTokenizer.from_pretrained(
        str(shared_data / "tokenizers" / "gpt2")
    )
    gpt = keras_llm.models.Gpt.from_preset("gpt2_tiny", dropout=0.0)
    return keras_llm.models.GptCausalLM(gpt, tokenizer=tokenizer)


def test_strings_in_strings_out(lm):
    prompts = ["First Citizen:\nBefore we proceed", "To be"]
    texts = lm.generate(prompts, max_new_tokens=5)
    assert isinstance(texts, list) and len(texts) == 2
    ids = lm.generate([lm.tokenizer(p).numpy().tolist() for p in prompts], max_new_tokens=5,
                      stop_token_ids=[lm.tokenizer.end_token_id])
    for text, prompt, row in zip(texts, prompts, ids, strict=True):
        assert text.startswith(prompt)
        length = len(lm.tokenizer(prompt).numpy()) + 5
        row = [t for t in row[:length] if t != lm.tokenizer.end_token_id]
        expected = lm.tokenizer.detokenize(np.array(row, "int32")).numpy()
        assert text == expected.decode(errors="replace")
    single = lm.generate("To be", max_new_tokens=5)
    assert single == texts[1]


def test_sampled_text_is_reproducible(lm):
    a = lm.generate("Romeo", max_new_tokens=6, strategy="top_p", top_p=0.9, seed=4)
    assert a == lm.generate("Romeo", max_new_tokens=6, strategy="top_p", top_p=0.9, seed=4)
