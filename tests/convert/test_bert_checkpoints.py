"""Parity with Hugging Face transformers (the oracle) for every BERT checkpoint format and head."""

import json
import shutil

import numpy as np
import pytest
from keras import ops

import keras_llm
from keras_llm.convert import CheckpointError
from keras_llm.models import (
    Bert,
    BertClassifier,
    BertPretrainer,
    BertQuestionAnswerer,
    BertTokenClassifier,
)
from tests.conftest import read_sst2

torch = pytest.importorskip("torch", reason="the parity oracle needs torch (the [test] extra)")
transformers = pytest.importorskip("transformers")

ATOL = 1e-4
TINY_CONFIG = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                   intermediate_size=37, max_position_embeddings=64, type_vocab_size=2)


def to_np(x):
    return ops.convert_to_numpy(x)


def random_batch(vocab_size=99, seed=0):
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(1, vocab_size, size=(3, 10))
    padding_mask = np.ones_like(token_ids)
    padding_mask[1, 6:] = 0
    padding_mask[2, 2:] = 0
    token_ids[padding_mask == 0] = 0
    segment_ids = np.zeros_like(token_ids)
    segment_ids[0, 5:] = 1
    return {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}


def reference_outputs(model, batch):
    with torch.no_grad():
        return model(
            input_ids=torch.tensor(batch["token_ids"]),
            token_type_ids=torch.tensor(batch["segment_ids"]),
            attention_mask=torch.tensor(batch["padding_mask"]),
        )


def save_hf(model, path):
    torch.manual_seed(0)
    model.eval()
    model.save_pretrained(path)
    return str(path)


@pytest.mark.slow
def test_minilm_real_checkpoint_matches_transformers(minilm_dir, shared_data):
    sentences, _ = read_sst2(shared_data, "dev", limit=16)
    hf_tokenizer = transformers.BertTokenizer.from_pretrained(minilm_dir)
    encoded = hf_tokenizer(sentences, padding=True, truncation=True, max_length=64,
                           return_tensors="np")
    assert encoded["attention_mask"].min() == 0  # The batch really has padding.
    batch = {"token_ids": encoded["input_ids"], "segment_ids": encoded["token_type_ids"],
             "padding_mask": encoded["attention_mask"]}
    bert = Bert.from_pretrained(minilm_dir)
    assert (bert.num_layers, bert.hidden_size) == (6, 384)
    outputs = bert(batch)
    reference = reference_outputs(transformers.BertModel.from_pretrained(minilm_dir).eval(), batch)
    np.testing.assert_allclose(to_np(outputs["sequence_output"]),
                               reference.last_hidden_state.numpy(), atol=ATOL)
    np.testing.assert_allclose(to_np(outputs["pooled_output"]),
                               reference.pooler_output.numpy(), atol=ATOL)


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "relu"])
def test_bert_model_with_each_activation(tmp_path, hidden_act):
    torch.manual_seed(0)
    config = transformers.BertConfig(**TINY_CONFIG, hidden_act=hidden_act)
    reference = transformers.BertModel(config)
    path = save_hf(reference, tmp_path)
    batch = random_batch()
    outputs = Bert.from_pretrained(path)(batch)
    expected = reference_outputs(reference, batch)
    np.testing.assert_allclose(to_np(outputs["sequence_output"]),
                               expected.last_hidden_state.numpy(), atol=ATOL)


HEADS = [
    ("BertForSequenceClassification", BertClassifier, dict(num_labels=3)),
    ("BertForSequenceClassification", BertClassifier, dict(num_labels=1)),
    ("BertForTokenClassification", BertTokenClassifier, dict(num_labels=9)),
    ("BertForQuestionAnswering", BertQuestionAnswerer, {}),
    ("BertForPreTraining", BertPretrainer, {}),
]


@pytest.mark.parametrize("hf_name, task_class, extra", HEADS)
def test_task_heads_match_transformers(tmp_path, hf_name, task_class, extra):
    torch.manual_seed(0)
    reference = getattr(transformers, hf_name)(transformers.BertConfig(**TINY_CONFIG, **extra))
    path = save_hf(reference, tmp_path)
    batch = random_batch()
    expected = reference_outputs(reference, batch)
    task = task_class.from_pretrained(path)
    if task_class is BertPretrainer:
        outputs = task({**batch, "mask_positions": np.tile(np.arange(10), (3, 1))})
        np.testing.assert_allclose(to_np(outputs["mlm_logits"]),
                                   expected.prediction_logits.numpy(), atol=ATOL)
        np.testing.assert_allclose(to_np(outputs["nsp_logits"]),
                                   expected.seq_relationship_logits.numpy(), atol=ATOL)
    elif task_class is BertQuestionAnswerer:
        outputs = task(batch)
        np.testing.assert_allclose(to_np(outputs["start_logits"]),
                                   expected.start_logits.numpy(), atol=ATOL)
        np.testing.assert_allclose(to_np(outputs["end_logits"]),
                                   expected.end_logits.numpy(), atol=ATOL)
    else:
        assert task.num_classes == extra["num_labels"]
        np.testing.assert_allclose(to_np(task(batch)), expected.logits.numpy(), atol=ATOL)


def test_pytorch_bin_checkpoint(tmp_path):
    torch.manual_seed(0)
    reference = transformers.BertForSequenceClassification(
        transformers.BertConfig(**TINY_CONFIG, num_labels=2,
                                id2label={0: "negative", 1: "positive"},
                                label2id={"negative": 0, "positive": 1})
    ).eval()
    reference.config.to_json_file(str(tmp_path / "config.json"))
    torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")
    classifier = BertClassifier.from_pretrained(str(tmp_path))
    assert classifier.label_names == ["negative", "positive"]
    batch = random_batch()
    np.testing.assert_allclose(to_np(classifier(batch)),
                               reference_outputs(reference, batch).logits.numpy(), atol=ATOL)


def test_task_from_backbone_only_checkpoint_starts_a_fresh_head(tmp_path):
    torch.manual_seed(0)
    path = save_hf(transformers.BertModel(transformers.BertConfig(**TINY_CONFIG)), tmp_path)
    classifier = BertClassifier.from_pretrained(path, num_classes=4)
    assert classifier(random_batch()).shape == (3, 4)
    with pytest.raises(ValueError, match="num_classes"):
        BertClassifier.from_pretrained(path)


def write_google_checkpoint(directory, reference, extra_variables=()):
    """Writes a checkpoint the way google-research/bert names and lays out variables."""
    import tensorflow as tf

    config = reference.config
    json.dump({k: getattr(config, k) for k in (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "max_position_embeddings", "type_vocab_size", "hidden_act",
        "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range")},
        open(directory / "bert_config.json", "w"))
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    variables = {}
    for name, value in state.items():
        if name.endswith("position_ids") or name.startswith("cls.predictions.decoder"):
            continue
        google = name.replace("bert.", "bert/", 1).replace(".", "/")
        google = google.replace("layer/", "layer_").replace("LayerNorm/weight", "LayerNorm/gamma")
        google = google.replace("LayerNorm/bias", "LayerNorm/beta")
        if google.endswith("_embeddings/weight"):
            google = google[: -len("/weight")]
        elif google == "cls/predictions/bias":
            google = "cls/predictions/output_bias"
        elif google.startswith("cls/seq_relationship/"):
            google = google.replace("/weight", "/output_weights").replace("/bias", "/output_bias")
        elif google.endswith("/weight"):
            google = google[: -len("/weight")] + "/kernel"
            value = value.T
        variables[google] = value
    variables.update(extra_variables)
    with tf.Graph().as_default():
        tf_variables = [tf.compat.v1.Variable(v, name=n) for n, v in variables.items()]
        saver = tf.compat.v1.train.Saver(tf_variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, str(directory / "bert_model.ckpt"), write_meta_graph=False)
    return variables


def test_google_checkpoint_matches_transformers(tmp_path):
    torch.manual_seed(0)
    reference = transformers.BertForPreTraining(transformers.BertConfig(**TINY_CONFIG)).eval()
    variables = write_google_checkpoint(tmp_path, reference, {
        "global_step": np.int64(1000),
        "bert/pooler/dense/kernel/adam_m": np.zeros((32, 32), "float32"),
    })
    assert "bert/encoder/layer_0/attention/self/query/kernel" in variables
    (tmp_path / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(99)))
    batch = random_batch()
    expected = reference_outputs(reference, batch)
    pretrainer = BertPretrainer.from_pretrained(str(tmp_path))
    outputs = pretrainer({**batch, "mask_positions": np.tile(np.arange(10), (3, 1))})
    np.testing.assert_allclose(to_np(outputs["mlm_logits"]), expected.prediction_logits.numpy(),
                               atol=ATOL)
    np.testing.assert_allclose(to_np(outputs["nsp_logits"]),
                               expected.seq_relationship_logits.numpy(), atol=ATOL)
    bert = keras_llm.models.Bert.from_pretrained(str(tmp_path))
    with torch.no_grad():
        hidden = reference.bert(input_ids=torch.tensor(batch["token_ids"]),
                                token_type_ids=torch.tensor(batch["segment_ids"]),
                                attention_mask=torch.tensor(batch["padding_mask"]))
    np.testing.assert_allclose(to_np(bert(batch)["pooled_output"]),
                               hidden.pooler_output.numpy(), atol=ATOL)


# Bad checkpoints: each error names the file or tensor.


@pytest.fixture
def hf_dir(tmp_path):
    torch.manual_seed(0)
    return save_hf(transformers.BertModel(transformers.BertConfig(**TINY_CONFIG)), tmp_path / "m")


def test_missing_folder_and_files(tmp_path, hf_dir):
    with pytest.raises(CheckpointError, match="does not exist"):
        Bert.from_pretrained(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither config.json"):
        Bert.from_pretrained(str(tmp_path / "empty"))
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="No weights found"):
        Bert.from_pretrained(hf_dir)


def test_corrupt_weights_and_config(tmp_path, hf_dir):
    weights = tmp_path / "m" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors.*corrupt"):
        Bert.from_pretrained(hf_dir)
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        Bert.from_pretrained(hf_dir)


def _edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    for key, value in changes.items():
        if value is None:
            del config[key]
    (path / "config.json").write_text(json.dumps(config))


def test_config_problems(tmp_path, hf_dir):
    path = tmp_path / "m"
    _edit_config(path, hidden_size=64, num_attention_heads=4)
    with pytest.raises(CheckpointError, match=r"word_embeddings.weight.*\(99, 32\).*\(99, 64\)"):
        Bert.from_pretrained(hf_dir)
    _edit_config(path, hidden_size=32, vocab_size=None)
    with pytest.raises(CheckpointError, match=r"lacks the required keys \['vocab_size'\]"):
        Bert.from_pretrained(hf_dir)
    _edit_config(path, vocab_size=99, model_type="roberta")
    with pytest.raises(CheckpointError, match="'roberta' model"):
        Bert.from_pretrained(hf_dir)


def test_dropout_rates_come_from_the_config(tmp_path, hf_dir):
    _edit_config(tmp_path / "m", hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.0)
    bert = Bert.from_pretrained(hf_dir)
    assert (bert.dropout, bert.attention_dropout) == (0.2, 0.0)
    # An overridden dropout still turns every dropout off, unless both are given.
    bert = Bert.from_pretrained(hf_dir, dropout=0.05)
    assert (bert.dropout, bert.attention_dropout) == (0.05, 0.05)
    bert = Bert.from_pretrained(hf_dir, dropout=0.05, attention_dropout=0.3)
    assert (bert.dropout, bert.attention_dropout) == (0.05, 0.3)


def test_missing_and_unknown_tensors(tmp_path, hf_dir):
    from safetensors.numpy import load_file, save_file

    path = tmp_path / "m" / "model.safetensors"
    original = load_file(str(path))
    missing = dict(original)
    del missing["encoder.layer.1.output.dense.weight"]
    save_file(missing, str(path))
    with pytest.raises(CheckpointError, match="lacks the tensor 'encoder.layer.1.output.dense"):
        Bert.from_pretrained(hf_dir)
    extra = dict(original)
    extra["encoder.layer.2.output.dense.weight"] = np.zeros((32, 37), "float32")
    save_file(extra, str(path))
    with pytest.raises(CheckpointError, match="match no layer.*encoder.layer.2.output.dense"):
        Bert.from_pretrained(hf_dir)


def test_head_shape_mismatch(tmp_path):
    torch.manual_seed(0)
    path = save_hf(transformers.BertForSequenceClassification(
        transformers.BertConfig(**TINY_CONFIG, num_labels=3)), tmp_path)
    with pytest.raises(CheckpointError, match="classifier.weight"):
        BertClassifier.from_pretrained(path, num_classes=2)


def test_shipped_folder_copy_loads(tmp_path, minilm_dir):
    # A user's own copy of a checkpoint folder (no hub, no network) loads the same.
    copy = shutil.copytree(minilm_dir, tmp_path / "minilm")
    assert Bert.from_pretrained(str(copy)).num_layers == 6
