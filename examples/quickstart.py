"""Fine-tunes a `bert_tiny` classifier on the sentiment sample that ships with keras-llm,
evaluates it on held-out sentences, saves it, checks the saved model reloads, and exports it
as a TF Serving SavedModel that takes raw strings.

Runs on a fresh machine with no network in about a minute on two CPU cores:

    python examples/quickstart.py --output_dir=outputs/quickstart
"""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

import keras_llm
from keras_llm.data import SAMPLE_DIR, load_sample_sentiment

flags.DEFINE_string("output_dir", "outputs/quickstart", "Where the model and results go.")
flags.DEFINE_integer("epochs", 8, "Passes over the 256 training sentences.")
flags.DEFINE_integer("batch_size", 16, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Peak AdamW learning rate.")
flags.DEFINE_integer("sequence_length", 32, "Tokens per sentence, [CLS] and [SEP] included.")
flags.DEFINE_integer("seed", 0, "Random seed.")
FLAGS = flags.FLAGS

LABEL_NAMES = ["negative", "positive"]


def make_dataset(preprocessor, sentences, labels, batch_size, shuffle):
    dataset = tf.data.Dataset.from_tensor_slices((sentences, labels))
    if shuffle:
        dataset = dataset.shuffle(len(sentences), seed=FLAGS.seed)
    # Tokenization runs inside the tf.data graph, batch by batch.
    dataset = dataset.batch(batch_size).map(lambda x, y: (preprocessor(x), y))
    return dataset.prefetch(tf.data.AUTOTUNE)


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    sentences, labels = load_sample_sentiment()
    train_x, train_y = sentences[:256], np.array(labels[:256])
    test_x, test_y = sentences[256:], np.array(labels[256:])

    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(str(SAMPLE_DIR / "vocab.txt"))
    preprocessor = keras_llm.tokenizers.BertPreprocessor(
        tokenizer, sequence_length=FLAGS.sequence_length
    )
    backbone = keras_llm.models.Bert.from_preset(
        "bert_tiny",
        vocab_size=tokenizer.vocabulary_size(),
        max_sequence_length=FLAGS.sequence_length,
    )
    classifier = keras_llm.models.BertClassifier(backbone, num_classes=2, label_names=LABEL_NAMES)

    train = make_dataset(preprocessor, train_x, train_y, FLAGS.batch_size, shuffle=True)
    test = make_dataset(preprocessor, test_x, test_y, FLAGS.batch_size, shuffle=False)
    steps = FLAGS.epochs * len(train)
    schedule = keras.optimizers.schedules.PolynomialDecay(
        FLAGS.learning_rate, decay_steps=steps, end_learning_rate=0.0
    )
    classifier.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    start = time.time()
    history = classifier.fit(train, epochs=FLAGS.epochs, verbose=2)
    train_seconds = time.time() - start
    loss, accuracy = classifier.evaluate(test, verbose=0)
    print(f"held-out accuracy: {accuracy:.3f} ({len(test_x)} sentences), loss {loss:.4f}")

    os.makedirs(FLAGS.output_dir, exist_ok=True)
    model_path = os.path.join(FLAGS.output_dir, "classifier.keras")
    classifier.save(model_path)
    tf.io.gfile.copy(str(SAMPLE_DIR / "vocab.txt"),
                     os.path.join(FLAGS.output_dir, "vocab.txt"), overwrite=True)
    restored = keras.models.load_model(model_path)
    examples = preprocessor(["A wonderful, moving film.", "The plot is dull and predictable."])
    logits = restored.predict(examples, verbose=0)
    np.testing.assert_allclose(logits, classifier.predict(examples, verbose=0), atol=1e-5)
    texts = ["A wonderful, moving film.", "The plot is dull and predictable."]
    for text, row in zip(texts, logits, strict=True):
        print(f"{text!r} -> {LABEL_NAMES[int(np.argmax(row))]}")

    # The serving road: a versioned SavedModel whose signature takes raw strings.
    version_dir = keras_llm.export.export_saved_model(
        classifier, os.path.join(FLAGS.output_dir, "serving"), preprocessor=preprocessor,
        warmup_examples=texts,
    )
    served = tf.saved_model.load(version_dir).signatures["serving_default"](tf.constant(texts))
    np.testing.assert_allclose(served["logits"].numpy(), logits, atol=1e-5)
    print(f"exported {version_dir}: serving_default(text) -> "
          f"{[n.decode() for n in served['label_names'].numpy()]}")

    results = {
        "accuracy": float(accuracy),
        "loss": float(loss),
        "train_loss_first_epoch": float(history.history["loss"][0]),
        "train_loss_last_epoch": float(history.history["loss"][-1]),
        "train_seconds": round(train_seconds, 2),
        "model": model_path,
        "saved_model": version_dir,
    }
    with open(os.path.join(FLAGS.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
