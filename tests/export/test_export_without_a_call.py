"""Task models whose backbone holds weights export without ever being called.

examples/serving/README.md exports `GptCausalLM(Gpt.from_pretrained(folder), tokenizer=...)`
as it is; the other fixtures in this folder call every model on a batch first, which hid that
such a model was not built (and that one built by `generate` alone exported a serving function
over inputs of unknown rank). Each export here is loaded back and served raw strings.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.export import export_saved_model
from keras_llm.models import T5, Gpt, GptCausalLM, T5Seq2SeqLM
from tests.export.conftest import tiny_bert

PROMPTS = ["Hello", "The quick brown fox"]
NEW_TOKENS = 4
DEFAULT_GPT_SHAPES = {"input_shape": {"token_ids": (None, None)}}


def _serve_gpt(path: str, prompts=PROMPTS, new_tokens: int = NEW_TOKENS) -> list[str]:
    signature = tf.saved_model.load(path).signatures["serving_default"]
    outputs = signature(prompt=tf.constant(prompts), max_new_tokens=tf.constant(new_tokens))
    return [t.decode() for t in outputs["generated_text"].numpy()]


def _export_gpt(lm, base) -> str:
    return export_saved_model(lm, base, max_new_tokens=NEW_TOKENS, max_prompt_length=12)


def _hf_gpt2_folder(tmp_path) -> str:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64,
                                     vocab_size=50257)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(tmp_path / "gpt2",
                                                                safe_serialization=True)
    return str(tmp_path / "gpt2")


def _called_backbone(tmp_path) -> Gpt:
    keras.utils.set_random_seed(11)
    gpt = Gpt.from_preset("gpt2_tiny", max_sequence_length=64)
    gpt({"token_ids": np.array([[464, 2068]], "int32")})  # The backbone, not the task.
    return gpt


GPT_MAKERS = {
    "backbone_called": lambda tmp_path, tok: GptCausalLM(_called_backbone(tmp_path),
                                                         tokenizer=tok),
    # examples/serving/README.md, section 6.
    "Gpt.from_pretrained": lambda tmp_path, tok: GptCausalLM(
        Gpt.from_pretrained(_hf_gpt2_folder(tmp_path)), tokenizer=tok),
    "GptCausalLM.from_pretrained": lambda tmp_path, tok: GptCausalLM.from_pretrained(
        _hf_gpt2_folder(tmp_path), tokenizer=tok),
}


@pytest.mark.parametrize("make", sorted(GPT_MAKERS))
def test_gpt_made_around_a_built_backbone_exports_uncalled(make, tmp_path, gpt_tokenizer):
    lm = GPT_MAKERS[make](tmp_path, gpt_tokenizer)
    assert lm.built and lm.get_build_config() == DEFAULT_GPT_SHAPES
    path = _export_gpt(lm, tmp_path / "serving")
    assert _serve_gpt(path) == lm.generate(PROMPTS, max_new_tokens=NEW_TOKENS)


def test_gpt_built_only_by_generate_exports(tmp_path, gpt_tokenizer):
    keras.utils.set_random_seed(12)
    lm = GptCausalLM(Gpt.from_preset("gpt2_tiny", max_sequence_length=64),
                     tokenizer=gpt_tokenizer)
    assert not lm.built  # A preset backbone has no weights until something builds it.
    generated = lm.generate(PROMPTS, max_new_tokens=NEW_TOKENS)
    # Built for any batch and length, not for an input of unknown rank.
    assert lm.get_build_config() == DEFAULT_GPT_SHAPES
    assert _serve_gpt(_export_gpt(lm, tmp_path / "serving")) == generated


def test_a_truly_unbuilt_gpt_is_still_refused(tmp_path, gpt_tokenizer):
    from keras_llm.export import ExportError

    lm = GptCausalLM(Gpt.from_preset("gpt2_tiny"), tokenizer=gpt_tokenizer)
    with pytest.raises(ExportError, match="never built"):
        _export_gpt(lm, tmp_path / "serving")
    assert not (tmp_path / "serving").exists()


# --- T5 --------------------------------------------------------------------------------------

T5_TEXTS = ["translate: the cat sat on the mat", "summarize: a long story about a dog", "hi"]


@pytest.fixture(scope="module")
def t5_tokenizer(tmp_path_factory) -> keras_llm.tokenizers.SentencePieceTokenizer:
    folder = tmp_path_factory.mktemp("spm")
    corpus = folder / "corpus.txt"
    corpus.write_text("".join(f"{t} number {i}\n" for i in range(200) for t in T5_TEXTS))
    model_file = keras_llm.tokenizers.train_sentence_piece(
        str(corpus), str(folder / "sp"), vocab_size=120, extra_ids=4, hard_vocab_limit=False)
    return keras_llm.tokenizers.SentencePieceTokenizer(model_file, add_end_token=True,
                                                       extra_ids=4)


def _t5_backbone(tokenizer, seed: int) -> T5:
    keras.utils.set_random_seed(seed)
    return T5(vocab_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2, hidden_size=32,
              key_value_size=16, intermediate_size=64, dropout=0.0, max_sequence_length=64,
              tie_embeddings=False)


def _serve_t5(path: str, texts=T5_TEXTS, new_tokens: int = NEW_TOKENS) -> list[str]:
    signature = tf.saved_model.load(path).signatures["serving_default"]
    outputs = signature(inputs=tf.constant(texts), max_new_tokens=tf.constant(new_tokens))
    return [t.decode() for t in outputs["generated_text"].numpy()]


def test_t5_made_around_a_built_backbone_exports_uncalled(tmp_path, t5_tokenizer):
    backbone = _t5_backbone(t5_tokenizer, 13)
    backbone.build()
    lm = T5Seq2SeqLM(backbone, tokenizer=t5_tokenizer)
    assert lm.built and lm.lm_head.built  # The head the task adds is built too.
    path = export_saved_model(lm, tmp_path / "serving", max_new_tokens=NEW_TOKENS)
    assert _serve_t5(path) == lm.generate(T5_TEXTS, max_new_tokens=NEW_TOKENS)


def test_t5_built_only_by_generate_exports(tmp_path, t5_tokenizer):
    lm = T5Seq2SeqLM(_t5_backbone(t5_tokenizer, 14), tokenizer=t5_tokenizer)
    assert not lm.built
    generated = lm.generate(T5_TEXTS, max_new_tokens=NEW_TOKENS)
    assert lm.get_build_config() == {"input_shape": {"encoder_token_ids": (None, None),
                                                     "decoder_token_ids": (None, None)}}
    path = export_saved_model(lm, tmp_path / "serving", max_new_tokens=NEW_TOKENS)
    assert _serve_t5(path) == generated


# --- BERT ------------------------------------------------------------------------------------


def test_bert_classifier_made_around_a_built_backbone_exports_uncalled(tmp_path, preprocessor):
    keras.utils.set_random_seed(15)
    bert = tiny_bert(preprocessor.tokenizer.vocabulary_size())
    bert.build({"token_ids": (None, None)})
    model = keras_llm.models.BertClassifier(bert, num_classes=2, label_names=["neg", "pos"])
    assert model.built
    path = export_saved_model(model, tmp_path / "serving", preprocessor)
    texts = ["a gripping, beautiful film.", "dull and far too long."]
    outputs = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(texts))
    expected = keras.ops.convert_to_numpy(model(preprocessor(texts)))
    np.testing.assert_allclose(outputs["logits"].numpy(), expected, atol=1e-5)
    assert [n.decode() for n in outputs["label_names"].numpy()] == [
        ["neg", "pos"][i] for i in expected.argmax(-1)]
