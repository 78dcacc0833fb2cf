"""Exports a saved `.keras` model as a TF Serving SavedModel version folder.

```bash
python -m keras_llm.export --model=outputs/quickstart/classifier.keras \
    --vocabulary=outputs/quickstart/vocab.txt --sequence_length=32 \
    --export_dir=outputs/serving/classifier --warmup="a fine film"
```

prints the version folder it wrote (`outputs/serving/classifier/1`). BERT models take
`--vocabulary` (a `vocab.txt`) or `--preprocessor_dir` (a checkpoint folder with `vocab.txt`
and, optionally, `tokenizer_config.json`); a `GptCausalLM` or `T5Seq2SeqLM` uses its own
tokenizer, or `--preprocessor_dir` (GPT: a folder with `encoder.json` + `vocab.bpe` or
`vocab.json` + `merges.txt`; T5: a folder with `spiece.model`). The raw-string `text`
signature needs one of these; `--signatures=token_ids` exports token ids alone.
"""

from __future__ import annotations

import sys

from absl import app, flags

flags.DEFINE_string("model", None, "The .keras file to export (a BERT task or backbone, "
                    "GptCausalLM or T5Seq2SeqLM).", required=True)
flags.DEFINE_string("export_dir", None, "TF Serving's model base folder.", required=True)
flags.DEFINE_string("vocabulary", None, "BERT: a WordPiece vocab.txt.")
flags.DEFINE_string("preprocessor_dir", None,
                    "A checkpoint folder holding the tokenizer files (vocab.txt, or GPT-2's).")
flags.DEFINE_integer("sequence_length", 128, "BERT: tokens per input, [CLS]/[SEP] included.")
flags.DEFINE_integer("version", None, "Version number; default: the next free one. An "
                     "existing version is never overwritten.")
flags.DEFINE_list("signatures", ["text", "token_ids"], "Signatures to write.")
flags.DEFINE_bool("pair", False, "BertClassifier: take `text` and `text_pair`.")
flags.DEFINE_multi_string("warmup", [], "A warmup example (repeatable), a string: written to "
                          "assets.extra/ for TF Serving to run before it serves.")
flags.DEFINE_integer("max_new_tokens", 64, "GPT: the most new tokens a request may ask.")
flags.DEFINE_integer("max_prompt_length", None, "GPT: prompt tokens kept (the last ones).")
flags.DEFINE_enum("strategy", "greedy", ["greedy", "random", "top_k", "top_p"],
                  "GPT: decoding strategy (random ones add a `seed` input).")
flags.DEFINE_float("temperature", 1.0, "GPT: sampling temperature.")
flags.DEFINE_integer("top_k", None, "GPT: k for top_k (and top_p) sampling.")
flags.DEFINE_float("top_p", None, "GPT: p for top_p sampling.")
flags.DEFINE_bool("jit_compile", False,
                  "GPT: XLA-compile the decode loop (TF Serving on CPU then needs "
                  "--xla_cpu_compilation_enabled=true).")
FLAGS = flags.FLAGS


def load_preprocessor(model, vocabulary: str | None, preprocessor_dir: str | None,
                      sequence_length: int):
    """The tokenizer / preprocessor the flags describe for `model` (None if none given)."""
    from keras_llm.models import GptCausalLM, T5Seq2SeqLM
    from keras_llm.tokenizers import (
        BertPreprocessor,
        BytePairTokenizer,
        SentencePieceTokenizer,
        WordPieceTokenizer,
    )

    generative = {GptCausalLM: BytePairTokenizer, T5Seq2SeqLM: SentencePieceTokenizer}
    for model_class, tokenizer_class in generative.items():
        if isinstance(model, model_class):
            if vocabulary:
                raise app.UsageError(
                    f"--vocabulary is a BERT WordPiece vocab.txt; a {model_class.__name__} "
                    "uses its own tokenizer, or --preprocessor_dir.")
            if preprocessor_dir:
                return tokenizer_class.from_pretrained(preprocessor_dir)
            return None  # The model's own tokenizer, if it has one.
    if vocabulary:
        tokenizer = WordPieceTokenizer(vocabulary)
    elif preprocessor_dir:
        tokenizer = WordPieceTokenizer.from_pretrained(preprocessor_dir)
    else:
        return None
    return BertPreprocessor(tokenizer, sequence_length=sequence_length)


def main(argv: list[str]) -> int:
    del argv
    import keras
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # TF's INFO lines about every saved function

    import keras_llm.models  # noqa: F401 - registers the classes load_model needs
    from keras_llm.export import ExportError, export_saved_model

    model = keras.models.load_model(FLAGS.model, compile=False)
    preprocessor = load_preprocessor(model, FLAGS.vocabulary, FLAGS.preprocessor_dir,
                                     FLAGS.sequence_length)
    if ("text" in FLAGS.signatures and preprocessor is None
            and getattr(model, "tokenizer", None) is None):
        print(f"export failed: the raw-string `text` signature needs a tokenizer, and this "
              f"{type(model).__name__} has none. Pass --vocabulary=vocab.txt or "
              "--preprocessor_dir=FOLDER (the checkpoint's tokenizer files), or "
              "--signatures=token_ids to export token ids alone.", file=sys.stderr)
        return 1
    try:
        path = export_saved_model(
            model, FLAGS.export_dir, preprocessor, version=FLAGS.version,
            signatures=FLAGS.signatures, warmup_examples=FLAGS.warmup or None, pair=FLAGS.pair,
            max_new_tokens=FLAGS.max_new_tokens, max_prompt_length=FLAGS.max_prompt_length,
            strategy=FLAGS.strategy, temperature=FLAGS.temperature, top_k=FLAGS.top_k,
            top_p=FLAGS.top_p, jit_compile=FLAGS.jit_compile)
    except ExportError as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    app.run(main)
