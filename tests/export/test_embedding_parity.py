"""The exported sentence-embedding signature equals sentence-transformers' all-MiniLM-L6-v2
recipe (mean pooling + L2 normalisation) computed with transformers' `BertModel`."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.export import export_saved_model

SENTENCES = [
    "A gripping, beautiful film.",
    "The movie was dull and far too long, and I left before the end.",
    "Café crème, naïve résumé!",
    "",
]


@pytest.mark.slow
def test_minilm_embeddings_match_transformers(tmp_path, minilm_dir):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    bert = keras_llm.models.Bert.from_pretrained(minilm_dir)
    pre = keras_llm.tokenizers.BertPreprocessor.from_pretrained(minilm_dir, sequence_length=128)
    path = export_saved_model(bert, tmp_path, pre, signatures=("text",))
    embedding = tf.saved_model.load(path).signatures["serving_default"](
        text=tf.constant(SENTENCES))["embedding"].numpy()

    tokenizer = transformers.BertTokenizer.from_pretrained(minilm_dir)
    model = transformers.BertModel.from_pretrained(minilm_dir).eval()
    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=128,
                      return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    expected = torch.nn.functional.normalize(mean, p=2, dim=1).numpy()

    assert embedding.shape == (4, 384)
    np.testing.assert_allclose(embedding, expected, atol=1e-5)
    # Similar sentences are closer than unrelated ones (the point of the model).
    assert embedding[0] @ embedding[1] > embedding[0] @ embedding[2]


@pytest.mark.parametrize("pooling", ["cls", "pooled"])
def test_contrastive_model_exports_its_own_embedding(tmp_path, pooling):
    vocab = keras_llm.data.SAMPLE_DIR / "vocab.txt"
    pre = keras_llm.tokenizers.BertPreprocessor(
        keras_llm.tokenizers.WordPieceTokenizer(str(vocab)), sequence_length=16)
    bert = keras_llm.models.Bert(vocab_size=pre.tokenizer.vocabulary_size(), num_layers=1,
                                 num_heads=2, hidden_size=16, intermediate_size=32,
                                 max_sequence_length=16)
    model = keras_llm.models.BertContrastive(bert, pooling=pooling, projection_dim=8)
    texts = ["a gripping, beautiful film.", "dull and far too long.", ""]
    expected = keras.ops.convert_to_numpy(model(pre(texts)))
    path = export_saved_model(model, tmp_path, pre)
    served = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(texts))
    np.testing.assert_allclose(served["embedding"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(expected, axis=1), 1.0, atol=1e-5)
