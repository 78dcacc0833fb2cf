"""Knowledge distillation: the loss against numpy, the intermediate terms, student
initialisation, bad input, training (teacher untouched), JAX, and SST-2 under MirroredStrategy."""

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm.models import Bert, BertClassifier, BertQuestionAnswerer
from keras_llm.training import distillation
from keras_llm.training.distillation import (
    Distiller,
    attention_loss,
    distillation_loss,
    hard_loss,
    hidden_state_loss,
    resolve_layer_map,
    soft_loss,
    student_from_preset,
    student_from_teacher,
    uniform_layer_map,
)

REPO = Path(__file__).resolve().parents[2]


# --- numpy references ------------------------------------------------------------------------
def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_cross_entropy(labels, logits):
    return -np_log_softmax(logits)[np.arange(len(labels)), labels]


def np_kl(teacher, student, temperature):
    log_t = np_log_softmax(teacher / temperature)
    log_s = np_log_softmax(student / temperature)
    return (np.exp(log_t) * (log_t - log_s)).sum(-1)


def value(x) -> float:
    return float(keras.ops.convert_to_numpy(x))


def weights(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


# A crafted batch: four examples, three classes.
STUDENT = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-3.0, 4.0, 1.0], [1.5, 1.5, -2.0]],
                   dtype="float32")
TEACHER = np.array([[3.0, -2.0, 0.0], [1.0, -1.0, 2.0], [-1.0, 5.0, -1.0], [0.0, 2.0, 0.0]],
                   dtype="float32")
LABELS = np.array([0, 2, 1, 1])


# --- the prediction-layer loss ---------------------------------------------------------------
def test_loss_equals_a_numpy_computation():
    temperature, alpha = 3.0, 0.3
    hard = np_cross_entropy(LABELS, STUDENT).mean()
    soft = temperature**2 * np_kl(TEACHER, STUDENT, temperature).mean()
    expected = alpha * hard + (1 - alpha) * soft
    got = distillation_loss(LABELS, STUDENT, TEACHER, temperature=temperature, alpha=alpha)
    np.testing.assert_allclose(value(got), expected, rtol=1e-6)

    sample_weight = np.array([1.0, 0.0, 2.0, 0.5])
    weighted = (alpha * np_cross_entropy(LABELS, STUDENT)
                + (1 - alpha) * temperature**2 * np_kl(TEACHER, STUDENT, temperature))
    got = distillation_loss(LABELS, STUDENT, TEACHER, temperature, alpha,
                            sample_weight=sample_weight)
    np.testing.assert_allclose(value(got), (weighted * sample_weight).mean(), rtol=1e-6)


def test_alpha_one_is_plain_cross_entropy():
    keras_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(LABELS, STUDENT)
    for teacher in (TEACHER, -TEACHER, np.zeros_like(TEACHER)):  # The teacher plays no part.
        got = distillation_loss(LABELS, STUDENT, teacher, temperature=5.0, alpha=1.0)
        np.testing.assert_allclose(value(got), value(keras_ce), rtol=1e-6)
    # alpha = 0: the soft term alone, which is 0 when the student equals the teacher.
    assert abs(value(distillation_loss(LABELS, TEACHER, TEACHER, alpha=0.0))) < 1e-6


def test_temperature_multiplies_the_kl_by_t_squared():
    for temperature in (0.5, 1.0, 2.0, 7.0):
        expected = temperature**2 * np_kl(TEACHER, STUDENT, temperature).mean()
        np.testing.assert_allclose(value(soft_loss(TEACHER, STUDENT, temperature)), expected,
                                   rtol=1e-5)
    # Logits scaled by T and softened by T give the same distributions as at T = 1, so the
    # soft term is exactly T^2 times the unsoftened one.
    at_one = value(distillation_loss(LABELS, STUDENT, TEACHER, temperature=1.0, alpha=0.0))
    at_four = value(distillation_loss(LABELS, 4 * STUDENT, 4 * TEACHER, temperature=4.0,
                                      alpha=0.0))
    np.testing.assert_allclose(at_four, 16 * at_one, rtol=1e-5)
    # What the T^2 is for: the gradient with respect to the student's logits stays
    # T * (softmax(s / T) - softmax(t / T)) / batch, of the same order for every T.
    temperature = 4.0
    student = tf.Variable(STUDENT)
    with tf.GradientTape() as tape:
        loss = soft_loss(TEACHER, student, temperature)
    gradient = tape.gradient(loss, student).numpy()
    expected = temperature * (np.exp(np_log_softmax(STUDENT / temperature))
                              - np.exp(np_log_softmax(TEACHER / temperature))) / len(STUDENT)
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-7)


def test_regression_uses_squared_errors_and_ignores_temperature():
    student = np.array([[0.5], [2.0], [3.5]], dtype="float32")
    teacher = np.array([[1.0], [2.5], [3.0]], dtype="float32")
    labels = np.array([0.0, 3.0, 4.0], dtype="float32")
    alpha = 0.25
    expected = (alpha * ((student[:, 0] - labels) ** 2).mean()
                + (1 - alpha) * ((student[:, 0] - teacher[:, 0]) ** 2).mean())
    for temperature in (1.0, 10.0):
        got = distillation_loss(labels, student, teacher, temperature, alpha)
        np.testing.assert_allclose(value(got), expected, rtol=1e-6)
    np.testing.assert_allclose(value(hard_loss(labels, student)),
                               ((student[:, 0] - labels) ** 2).mean(), rtol=1e-6)


# --- the intermediate terms ------------------------------------------------------------------
def test_hidden_state_loss_with_a_projection_equals_numpy():
    rng = np.random.default_rng(0)
    student = [rng.normal(size=(2, 4, 3)).astype("float32") for _ in range(2)]
    teacher = [rng.normal(size=(2, 4, 5)).astype("float32") for _ in range(2)]
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    kernel = rng.normal(size=(3, 5)).astype("float32")
    projection = keras.layers.Dense(5, use_bias=False)
    projection.build((None, None, 3))
    projection.set_weights([kernel])

    per_layer = []
    for s, t in zip(student, teacher, strict=True):
        squared = ((s @ kernel - t) ** 2).mean(-1)  # [batch, seq]
        per_layer.append((squared * mask).sum() / mask.sum())
    got = hidden_state_loss(student, teacher, padding_mask=mask, projection=projection)
    np.testing.assert_allclose(value(got), np.mean(per_layer), rtol=1e-5)
    # Padded positions change nothing.
    noisy = [t.copy() for t in teacher]
    for t in noisy:
        t[mask == 0] += 100.0
    again = hidden_state_loss(student, noisy, padding_mask=mask, projection=projection)
    np.testing.assert_allclose(value(again), value(got), rtol=1e-6)
    with pytest.raises(ValueError, match="pass `projection=keras.layers.Dense"):
        hidden_state_loss(student, teacher)
    with pytest.raises(ValueError, match="one entry per mapped layer"):
        hidden_state_loss(student, teacher[:1], projection=projection)


def softmax_maps(rng, batch, heads, seq):
    logits = rng.normal(size=(batch, heads, seq, seq))
    return np.exp(np_log_softmax(logits)).astype("float32")


def test_attention_loss_equals_numpy():
    rng = np.random.default_rng(1)
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]])
    pair_mask = mask[:, :, None] * mask[:, None, :]
    student = [softmax_maps(rng, 2, 2, 4) for _ in range(3)]
    teacher = [softmax_maps(rng, 2, 2, 4) for _ in range(3)]
    per_layer = [(((s - t) ** 2).mean(1) * pair_mask).sum() / pair_mask.sum()
                 for s, t in zip(student, teacher, strict=True)]
    got = attention_loss(student, teacher, padding_mask=mask)
    np.testing.assert_allclose(value(got), np.mean(per_layer), rtol=1e-5)
    # Different head counts: each side is averaged over its heads first.
    wide = [softmax_maps(rng, 2, 4, 4) for _ in range(3)]
    per_layer = [(((s.mean(1) - t.mean(1)) ** 2) * pair_mask).sum() / pair_mask.sum()
                 for s, t in zip(student, wide, strict=True)]
    got = attention_loss(student, wide, padding_mask=mask)
    np.testing.assert_allclose(value(got), np.mean(per_layer), rtol=1e-5)
    assert value(attention_loss(student, student)) == 0.0


# --- layer maps and student initialisation ---------------------------------------------------
def test_uniform_layer_map():
    assert uniform_layer_map(12, 4) == [2, 5, 8, 11]  # TinyBERT's g(m) = 3m, 0-based.
    assert uniform_layer_map(12, 6) == [1, 3, 5, 7, 9, 11]
    assert uniform_layer_map(4, 3) == [0, 1, 3]
    assert uniform_layer_map(6, 6) == list(range(6))
    with pytest.raises(ValueError, match="no deeper than the teacher"):
        uniform_layer_map(2, 4)
    assert resolve_layer_map("top", 6, 2) == [4, 5]
    assert resolve_layer_map([0, 5], 6, 2) == [0, 5]
    with pytest.raises(ValueError, match="one teacher layer for each"):
        resolve_layer_map([0, 1, 2], 6, 2)
    with pytest.raises(ValueError, match=r"layers are 0\.\.5"):
        resolve_layer_map([0, 6], 6, 2)
    with pytest.raises(ValueError, match="layer_map must be one of"):
        resolve_layer_map("random", 6, 2)


def tiny_classifier(num_classes=2, vocab_size=60, layers=4, hidden=16, heads=2, dropout=0.0,
                    type_vocab_size=2, initializer_range=0.02):
    backbone = Bert(vocab_size=vocab_size, num_layers=layers, num_heads=heads,
                    hidden_size=hidden, intermediate_size=2 * hidden, max_sequence_length=16,
                    type_vocab_size=type_vocab_size, dropout=dropout,
                    initializer_range=initializer_range)
    return BertClassifier(backbone, num_classes=num_classes)


def crafted_batch(vocab_size=60, batch=8, seq=10, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, seq + 1, size=batch)
    mask = np.arange(seq)[None, :] < lengths[:, None]
    token_ids = np.where(mask, rng.integers(5, vocab_size, size=(batch, seq)), 0)
    inputs = {"token_ids": token_ids.astype("int32"), "padding_mask": mask,
              "segment_ids": np.zeros((batch, seq), "int32")}
    return inputs, rng.integers(0, 2, size=batch)


def test_student_from_teacher_copies_every_kth_layer():
    teacher = tiny_classifier(num_classes=3, layers=4)
    teacher.label_names = ["a", "b", "c"]
    student = student_from_teacher(teacher, every=2)
    t, s = teacher.backbone, student.backbone
    assert (s.num_layers, s.hidden_size, s.vocab_size, student.num_classes) == (2, 16, 60, 3)
    assert student.label_names == ["a", "b", "c"]
    pairs = [(s.embeddings, t.embeddings), (s.encoder_blocks[0], t.encoder_blocks[1]),
             (s.encoder_blocks[1], t.encoder_blocks[3]), (s.pooler, t.pooler),
             (student.classifier, teacher.classifier)]
    for copy, original in pairs:
        assert len(copy.weights) == len(original.weights) > 0
        for a, b in zip(weights(copy.weights), weights(original.weights), strict=True):
            np.testing.assert_array_equal(a, b)
    # Copies, not shared variables: training the student leaves the teacher alone.
    assert s.embeddings.weights[0] is not t.embeddings.weights[0]
    # The copied layers are the ones the uniform map matches.
    assert uniform_layer_map(4, 2) == [1, 3]

    explicit = student_from_teacher(teacher, layers=[0, 2, 3], dropout=0.2)
    assert explicit.backbone.num_layers == 3 and explicit.backbone.dropout == 0.2
    np.testing.assert_array_equal(weights(explicit.backbone.encoder_blocks[1].weights)[0],
                                  weights(t.encoder_blocks[2].weights)[0])
    # every=1 copies the whole teacher: the same function.
    inputs, _ = crafted_batch()
    np.testing.assert_allclose(student_from_teacher(teacher, every=1)(inputs), teacher(inputs),
                               atol=1e-6)
    with pytest.raises(ValueError, match="every=5"):
        student_from_teacher(teacher, every=5)
    with pytest.raises(ValueError, match="teacher layers 0..3"):
        student_from_teacher(teacher, layers=[4])


def test_student_from_preset_shares_the_vocabulary_and_labels():
    teacher = tiny_classifier(num_classes=1, vocab_size=77, type_vocab_size=3)
    student = student_from_preset("bert_tiny", teacher, num_layers=1, dropout=0.0)
    b = student.backbone
    assert (b.vocab_size, b.type_vocab_size, b.max_sequence_length) == (77, 3, 16)
    assert (b.num_layers, b.hidden_size, student.num_classes) == (1, 128, 1)
    with pytest.raises(ValueError, match="teacher's token and segment ids"):
        student_from_preset("bert_tiny", teacher, vocab_size=30522)
    with pytest.raises(ValueError, match="Unknown Bert preset"):
        student_from_preset("bert_galactic", teacher)


# --- bad input -------------------------------------------------------------------------------
def test_bad_input_raises_before_training():
    teacher = tiny_classifier()
    student = tiny_classifier(layers=2, hidden=8)
    with pytest.raises(ValueError, match="vocabulary of 60 token ids and the student 61"):
        Distiller(teacher, tiny_classifier(vocab_size=61))
    with pytest.raises(ValueError, match="2 label\\(s\\) and the student 3.*num_classes=2"):
        Distiller(teacher, tiny_classifier(num_classes=3))
    with pytest.raises(ValueError, match="2 segment ids and the student 3"):
        Distiller(teacher, tiny_classifier(type_vocab_size=3))
    for temperature in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            Distiller(teacher, student, temperature=temperature)
    for alpha in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
            Distiller(teacher, student, alpha=alpha)
    with pytest.raises(ValueError, match="hidden_weight must be"):
        Distiller(teacher, student, hidden_weight=-1.0)
    with pytest.raises(ValueError, match="one teacher layer for each"):
        Distiller(teacher, student, attention_weight=1.0, layer_map=[0, 1, 2])
    with pytest.raises(ValueError, match="no deeper than the teacher"):
        Distiller(student, tiny_classifier(layers=3, hidden=8), hidden_weight=1.0)
    qa = BertQuestionAnswerer(Bert.from_preset("bert_tiny", vocab_size=60))
    with pytest.raises(TypeError, match="teacher must be a keras_llm BertClassifier"):
        Distiller(qa, student)
    # The pure functions check their arguments too.
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(LABELS, STUDENT, TEACHER, temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(LABELS, STUDENT, TEACHER, alpha=2.0)
    with pytest.raises(ValueError, match="the same model"):
        Distiller(teacher, teacher)
    assert teacher.trainable  # Refused before anything was changed.
    distiller = Distiller(teacher, student)
    with pytest.raises(ValueError, match="takes no `loss`"):
        distiller.compile(optimizer="adam", loss="mse")


# --- the distiller ---------------------------------------------------------------------------
def test_distiller_loss_is_the_sum_of_its_terms():
    teacher = tiny_classifier(layers=4, hidden=16)
    student = tiny_classifier(layers=2, hidden=8)
    distiller = Distiller(teacher, student, temperature=3.0, alpha=0.4, hidden_weight=0.7,
                          attention_weight=2.0)
    inputs, labels = crafted_batch()
    outputs = distiller(inputs, training=False)
    # The layer-by-layer forward pass is the models' own.
    np.testing.assert_allclose(outputs["logits"], student(inputs), atol=1e-6)
    np.testing.assert_allclose(outputs["teacher_logits"], teacher(inputs), atol=1e-6)
    reference = teacher.backbone(inputs, return_attention_scores=True)
    assert len(outputs["student_hidden_states"]) == len(outputs["teacher_hidden_states"]) == 3
    np.testing.assert_allclose(outputs["teacher_hidden_states"][-1],
                               reference["sequence_output"], atol=1e-6)
    for mapped, index in zip(outputs["teacher_attention_maps"], [1, 3], strict=True):
        np.testing.assert_allclose(mapped, reference["attention_scores"][index], atol=1e-6)
    assert distiller.hidden_projection is not None  # Widths 8 and 16.

    mask = inputs["padding_mask"]
    expected = (
        value(distillation_loss(labels, outputs["logits"], outputs["teacher_logits"], 3.0, 0.4))
        + 0.7 * value(hidden_state_loss(outputs["student_hidden_states"],
                                        outputs["teacher_hidden_states"], mask,
                                        projection=distiller.hidden_projection))
        + 2.0 * value(attention_loss(outputs["student_attention_maps"],
                                     outputs["teacher_attention_maps"], mask)))
    distiller.compile(optimizer="adam", jit_compile=False)
    logs = distiller.evaluate(inputs, labels, batch_size=8, return_dict=True, verbose=0)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)
    assert set(logs) == {"loss", "hard_loss", "soft_loss", "hidden_loss", "attention_loss"}

    # alpha = 1 without intermediate terms: the model-level loss is plain cross-entropy.
    plain = Distiller(teacher, student, alpha=1.0)
    plain.compile(optimizer="adam", metrics=["sparse_categorical_accuracy"], jit_compile=False)
    logs = plain.evaluate(inputs, labels, batch_size=8, return_dict=True, verbose=0)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(logs["loss"], value(cross_entropy(labels, student(inputs))),
                               rtol=1e-5)
    accuracy = np.mean(np.argmax(student(inputs), -1) == labels)
    np.testing.assert_allclose(logs["sparse_categorical_accuracy"], accuracy)


def test_fit_lowers_the_loss_and_leaves_the_teacher_bit_identical(tmp_path):
    # Large initial weights give the random teacher confident outputs and peaked attention.
    teacher = tiny_classifier(layers=2, hidden=16, initializer_range=0.5)
    student = tiny_classifier(layers=1, hidden=8)
    distiller = Distiller(teacher, student, temperature=2.0, alpha=0.2, hidden_weight=1.0,
                          attention_weight=1.0)
    assert {id(v) for v in distiller.trainable_weights}.isdisjoint(
        id(v) for v in teacher.weights)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    inputs, labels = crafted_batch()
    teacher_before = weights(teacher.weights)
    student_before = weights(student.weights)
    before = distiller.evaluate(inputs, labels, batch_size=8, return_dict=True, verbose=0)
    distiller.fit(inputs, labels, batch_size=8, epochs=15, verbose=0)
    after = distiller.evaluate(inputs, labels, batch_size=8, return_dict=True, verbose=0)
    assert after["loss"] < 0.7 * before["loss"], (before, after)
    for name in ("soft_loss", "hidden_loss", "attention_loss"):
        assert after[name] < before[name], (name, before, after)
    for a, b in zip(teacher_before, weights(teacher.weights), strict=True):
        np.testing.assert_array_equal(a, b)
    assert max(np.abs(a - b).max() for a, b in zip(student_before, weights(student.weights),
                                                     strict=True)) > 0

    # The student saves and loads on its own, without the teacher or the projection.
    path = str(tmp_path / "student.keras")
    distiller.student.save(path)
    loaded = keras.models.load_model(path)
    assert len(loaded.weights) == len(student.weights)
    np.testing.assert_allclose(loaded(inputs), student(inputs), atol=1e-6)


def test_regression_distiller_trains_on_float_labels():
    teacher = tiny_classifier(num_classes=1)
    student = student_from_teacher(teacher, every=2)
    distiller = Distiller(teacher, student, alpha=0.5, temperature=4.0)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=False)
    inputs, _ = crafted_batch()
    labels = np.linspace(0.0, 5.0, 8).astype("float32")
    outputs = distiller(inputs)
    expected = (0.5 * np.mean((outputs["logits"][:, 0] - labels) ** 2)
                + 0.5 * np.mean((outputs["logits"][:, 0] - outputs["teacher_logits"][:, 0]) ** 2))
    logs = distiller.evaluate(inputs, labels, batch_size=8, return_dict=True, verbose=0)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)
    distiller.fit(inputs, labels, batch_size=8, epochs=10, verbose=0)
    trained = distiller.evaluate(inputs, labels, batch_size=8, return_dict=True, verbose=0)
    assert trained["loss"] < logs["loss"]


def test_config_round_trips():
    teacher = tiny_classifier()
    distiller = Distiller(teacher, tiny_classifier(layers=2, hidden=8), temperature=4.0,
                          alpha=0.2, hidden_weight=0.5, attention_weight=0.1, layer_map=[0, 3])
    config = json.loads(json.dumps(distiller.get_config()))
    again = Distiller.from_config(config)
    assert json.loads(json.dumps(again.get_config())) == config
    assert again.teacher_layers == [0, 3] and not again.teacher.trainable
    assert again.student.backbone.hidden_size == 8


def test_docstring_examples():
    result = doctest.testmod(distillation, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --- other backends and distribution (subprocesses) ------------------------------------------
JAX_SCRIPT = """
import json, sys
import keras, numpy as np
from keras_llm.models import Bert, BertClassifier
from keras_llm.training.distillation import Distiller

def classifier(layers, hidden, initializer_range):
    return BertClassifier(Bert(vocab_size=60, num_layers=layers, num_heads=2, hidden_size=hidden,
                               intermediate_size=2 * hidden, max_sequence_length=16, dropout=0.0,
                               initializer_range=initializer_range), num_classes=2)

keras.utils.set_random_seed(0)
teacher, student = classifier(2, 16, 0.5), classifier(1, 8, 0.02)
distiller = Distiller(teacher, student, hidden_weight=1.0, attention_weight=1.0)
distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
rng = np.random.default_rng(0)
x = {"token_ids": rng.integers(5, 60, size=(8, 10)).astype("int32"),
     "padding_mask": np.arange(10)[None] < rng.integers(4, 11, size=(8, 1))}
y = rng.integers(0, 2, size=8)
frozen = [keras.ops.convert_to_numpy(v) for v in teacher.weights]
before = distiller.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)
distiller.fit(x, y, batch_size=8, epochs=10, verbose=0)
after = distiller.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)
same = all(np.array_equal(a, keras.ops.convert_to_numpy(v))
           for a, v in zip(frozen, teacher.weights))
json.dump({"backend": keras.backend.backend(), "before": before, "after": after,
           "teacher_unchanged": same}, open(sys.argv[1], "w"))
"""


@pytest.mark.slow
def test_distiller_trains_on_jax(tmp_path):
    pytest.importorskip("jax")
    script, result = tmp_path / "jax_distill.py", tmp_path / "result.json"
    script.write_text(JAX_SCRIPT)
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script), str(result)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(result.read_text())
    assert outcome["backend"] == "jax" and outcome["teacher_unchanged"]
    before, after = outcome["before"], outcome["after"]
    assert after["loss"] < 0.7 * before["loss"], outcome
    for term in ("soft_loss", "hidden_loss", "attention_loss"):
        assert after[term] < before[term], (term, outcome)


SST2_SCRIPT = """
import json, sys, time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, sys.argv[1])
from tests.conftest import read_sst2
from keras_llm.data import SAMPLE_DIR, load_sample_sentiment
from keras_llm.data.pipeline import shuffle_epochs
from keras_llm.models import Bert, BertClassifier
from keras_llm.training.distillation import Distiller, student_from_preset
from keras_llm.training.finetuning import (FinetuningConfig, FinetuningRun,
                                          build_from_first_replica)

shared, output = Path(sys.argv[2]), Path(sys.argv[3])
started = time.time()


def make_run(name, **settings):
    return FinetuningRun(FinetuningConfig(
        vocab_file=str(SAMPLE_DIR / "vocab.txt"), output_dir=str(output / name),
        max_seq_length=64, batch_size=32, learning_rate=2e-3, num_train_steps=40,
        steps_per_checkpoint=10, warmup_ratio=0.1, dropout=0.0, seed=1, **settings))


# Two logical CPU devices, made before TensorFlow touches a device.
run = make_run("mirrored", strategy="mirrored", cpu_devices=2)
preprocessor = run.load_preprocessor()
sentences, labels = read_sst2(shared, "train", limit=384)
dev_sentences, dev_labels = read_sst2(shared, "dev", limit=256)
rows_inputs = preprocessor(tf.constant(sentences[:256]))
dev_inputs = preprocessor(tf.constant(dev_sentences))


def batches(sentences, labels):
    examples = tf.data.Dataset.from_tensor_slices((sentences, labels))
    return shuffle_epochs(examples, seed=1).batch(32).map(lambda x, y: (preprocessor(x), y))


train = batches(sentences, labels)


def classifier(vocab_size):
    backbone = Bert.from_preset("bert_tiny", vocab_size=vocab_size, max_sequence_length=64,
                                dropout=0.0)
    return BertClassifier(backbone, num_classes=2)


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def closeness(student, teacher_logits, inputs):
    # KL(teacher || student) at T = 1 on the distillation rows.
    logits = student.predict(inputs, batch_size=64, verbose=0)
    log_t, log_s = log_softmax(teacher_logits), log_softmax(logits)
    return {"kl": float(np.mean(np.sum(np.exp(log_t) * (log_t - log_s), -1)))}


# The teacher: bert_tiny fine-tuned on both replicas. On SST-2 itself a bert_tiny over the
# 158-piece sample vocabulary learns little in a few dozen steps (its outputs stay nearly
# constant); trained on the shipped sentiment sample, whose words the vocabulary holds, it
# gives SST-2 sentences confident, input-dependent outputs for the student to follow.
vocab_size = preprocessor.tokenizer.vocabulary_size()
with run.scope():
    teacher = classifier(vocab_size)
    teacher.build({"token_ids": (None, None)})
    teacher.compile(optimizer=keras.optimizers.Adam(1e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
build_from_first_replica(teacher)
sample_sentences, sample_labels = load_sample_sentiment()
teacher.fit(batches(sample_sentences, np.array(sample_labels)), steps_per_epoch=10, epochs=3,
            verbose=0)
teacher_seconds = time.time() - started
teacher_rows = teacher.predict(rows_inputs, batch_size=64, verbose=0)
teacher_dev = teacher.predict(dev_inputs, batch_size=64, verbose=0)
frozen = [keras.ops.convert_to_numpy(v) for v in teacher.weights]

# The student: one narrower layer at random; hidden states and attention maps distilled too.
with run.scope():
    student = student_from_preset("bert_tiny", teacher, num_layers=1, hidden_size=64,
                                  num_heads=2, intermediate_size=256, dropout=0.0)
    distiller = Distiller(teacher, student, temperature=2.0, alpha=0.2, hidden_weight=1.0,
                          attention_weight=1.0)
build_from_first_replica(distiller)
distiller.save_weights(str(output / "initial.weights.h5"))
run.compile(distiller, loss=None, num_train_examples=len(sentences))
rows = tf.data.Dataset.from_tensor_slices((rows_inputs, labels[:256])).batch(32)
start = {**closeness(student, teacher_rows, rows_inputs),
         **distiller.evaluate(rows, return_dict=True, verbose=0)}
mirrored = run.fit(distiller, train, verbose=0)
end = {**closeness(student, teacher_rows, rows_inputs),
       **distiller.evaluate(rows, return_dict=True, verbose=0)}
distill_seconds = time.time() - started - teacher_seconds

# The same distillation on one device, from the same weights.
one = make_run("one_device", strategy="one_device")
with one.scope():
    teacher_copy = classifier(vocab_size)
    teacher_copy.build({"token_ids": (None, None)})
    student_copy = student_from_preset("bert_tiny", teacher_copy, num_layers=1, hidden_size=64,
                                       num_heads=2, intermediate_size=256, dropout=0.0)
    copy = Distiller(teacher_copy, student_copy, temperature=2.0, alpha=0.2,
                     hidden_weight=1.0, attention_weight=1.0)
copy.load_weights(str(output / "initial.weights.h5"))
one.compile(copy, loss=None, num_train_examples=len(sentences))
one_device = one.fit(copy, train, verbose=0)


def accuracy(model):
    logits = model.predict(dev_inputs, batch_size=64, verbose=0)
    return float(np.mean(logits.argmax(-1) == dev_labels))


json.dump({
    "num_replicas": [run.num_replicas, one.num_replicas],
    "losses": mirrored["train_loss_history"],
    "one_device_losses": one_device["train_loss_history"],
    "start": start,
    "end": end,
    "teacher_unchanged": all(np.array_equal(a, keras.ops.convert_to_numpy(v))
                             for a, v in zip(frozen, teacher.weights)),
    "teacher_margin_std": float(np.std(teacher_rows[:, 1] - teacher_rows[:, 0])),
    "dev_accuracy": {"teacher": float(np.mean(teacher_dev.argmax(-1) == dev_labels)),
                     "student": accuracy(student)},
    "parameters": {"teacher": teacher.count_params(), "student": student.count_params()},
    "seconds": {"teacher": teacher_seconds, "distillation": distill_seconds,
                "all": time.time() - started},
}, open(output / "result.json", "w"), indent=1)
"""


@pytest.mark.slow
def test_distillation_on_sst2_with_two_mirrored_replicas(shared_data, tmp_path):
    """bert_tiny teacher, a one-layer 64-wide student, 384 SST-2 rows, 40 steps of 32 on two
    mirrored replicas: the loss curve is the one-device run's, the student comes closer to
    the teacher in every term, and the teacher's weights do not move."""
    script = tmp_path / "distill_sst2.py"
    script.write_text(SST2_SCRIPT)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    done = subprocess.run([sys.executable, str(script), str(REPO), str(shared_data),
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    outcome = json.loads((tmp_path / "result.json").read_text())
    assert outcome["num_replicas"] == [2, 1]
    assert outcome["teacher_unchanged"]
    losses, one_device = np.array(outcome["losses"]), np.array(outcome["one_device_losses"])
    assert len(losses) == len(one_device) == 4
    # The replicas' losses are averaged, not summed: the curve is the one-device run's (the
    # first 10 steps closely; later, round-off in the cross-replica sum grows through Adam).
    np.testing.assert_allclose(losses[0], one_device[0], rtol=5e-3)
    np.testing.assert_allclose(losses, one_device, rtol=8e-2)
    assert losses[-1] < 0.7 * losses[0], outcome
    start, end = outcome["start"], outcome["end"]
    assert end["kl"] < 0.5 * start["kl"], outcome  # The student's outputs near the teacher's.
    for term in ("soft_loss", "hidden_loss", "loss"):
        assert end[term] < start[term], (term, outcome)
    # Both models start with near-uniform attention maps (each weight its own small random
    # draw), so the attention term starts around 1e-5: it must stay at that floor.
    assert end["attention_loss"] < max(start["attention_loss"], 1e-4), outcome
