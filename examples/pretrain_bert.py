"""Pretrains BERT (masked LM + next-sentence prediction) on a plain-text corpus.

    # A bert_tiny from scratch on tiny Shakespeare, with a vocabulary built on the fly:
    python examples/pretrain_bert.py --output_dir=runs/pretrain_bert
    # Your corpus (one sentence per line, a blank line between documents), whole-word
    # masking, a bigger model, bfloat16, a TF Serving export of the encoder:
    python examples/pretrain_bert.py --text_file=corpus.txt --preset=bert_mini \\
        --whole_word_masking --mixed_precision=bfloat16 --num_train_steps=20000 \\
        --export_dir=exported/bert --output_dir=runs/my_bert
    # Continued pretraining of a checkpoint (its vocab.txt; its MLM/NSP heads when it has them):
    python examples/pretrain_bert.py --text_file=corpus.txt --init_checkpoint=/path/to/bert

Data (see `keras_llm.data.pretraining`): the corpus is read as documents separated by blank
lines, one sentence per line (no sentence splitter runs); the last `--validation_fraction`
of the documents is held out. Without `--vocab_file` (or an `--init_checkpoint` folder with
its vocab.txt) an uncased WordPiece vocabulary of about `--vocab_size` pieces is learnt from
the training documents with tensorflow-text's `bert_vocab_from_dataset` and written to
<output_dir>/vocab.txt (a resumed run reuses it). Sentence pairs are packed up to
`--max_seq_length` tokens, half of them with a random second segment from another document
(`--dupe_factor` passes over the corpus). Masking is dynamic: every batch is masked afresh in
the tf.data graph (`--masked_lm_prob` of the tokens, at most `--max_predictions_per_seq`;
80% [MASK], 10% random, 10% kept; `--whole_word_masking` masks all pieces of a word), from
seeds that depend only on `--seed` and the step, so a resumed run sees the same batches.

Training uses the shared fine-tuning runner (`keras_llm.training.finetuning`) and its flags:
`--strategy`, `--mixed_precision`, `--jit_compile`, AdamW with warmup and linear decay
(`--learning_rate`, `--warmup_ratio`, `--weight_decay`, `--gradient_accumulation_steps`),
`--num_train_steps` or `--num_train_epochs` (over the training pairs), checkpoints every
`--steps_per_checkpoint` steps that a killed run resumes from, TensorBoard logs in
<output_dir>/logs, held-out evaluation every `--eval_every` steps and at the end. The end
writes <output_dir>/results.json (held-out MLM loss and accuracy, NSP accuracy, the same
before training, and a unigram baseline for the MLM loss), the pretrainer as
<output_dir>/pretrainer.keras (`--init_checkpoint` takes it, with `--vocab_file`), and with
`--export_dir` a SavedModel of the encoder (raw strings in, sentence embeddings out).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
from absl import app, flags, logging

from keras_llm.data.pretraining import (
    MaskedLmMasker,
    NspPairs,
    build_vocabulary,
    check_pretraining_vocabulary,
    create_nsp_pairs,
    load_pretraining_tokenizer,
    pretraining_dataset,
    read_documents,
    tokenize_documents,
)
from keras_llm.models import BertPretrainer, list_presets
from keras_llm.tokenizers import BertPreprocessor, WordPieceTokenizer
from keras_llm.training import finetuning, read_checkpoint_state

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

finetuning.define_flags(
    task_flags=False,  # No --task, --data_dir or --tfds_name: the corpus is --text_file.
    output_dir="runs/pretrain_bert",
    max_seq_length=128,
    batch_size=32,
    learning_rate=1e-3,
    num_train_epochs=4.0,
    steps_per_checkpoint=250,
)
flags.DEFINE_string("text_file", str(SHARED_DATA / "tinyshakespeare" / "input.txt"),
                    "UTF-8 corpus: one sentence per line, a blank line between documents.")
flags.DEFINE_string("preset", "bert_tiny",
                    "Model size when starting from scratch (without --init_checkpoint).")
flags.DEFINE_integer("vocab_size", 8000,
                     "Most WordPiece pieces when building a vocabulary (without --vocab_file).")
flags.DEFINE_bool("whole_word_masking", False, "Mask all the pieces of a word together.")
flags.DEFINE_float("masked_lm_prob", 0.15, "Share of the tokens to predict.")
flags.DEFINE_integer("max_predictions_per_seq", 20, "Most predicted tokens per sequence.")
flags.DEFINE_float("short_seq_prob", 0.1, "Share of pairs packed to a shorter random length.")
flags.DEFINE_integer("dupe_factor", 1, "Passes over the corpus when building the pairs.")
flags.DEFINE_float("validation_fraction", 0.05, "Share of the documents held out (the last).")
flags.DEFINE_bool("save_model", True, "Save the pretrainer as <output_dir>/pretrainer.keras.")
flags.adopt_module_key_flags(finetuning)  # --help lists the shared flags too.
FLAGS = flags.FLAGS


def check_flags() -> None:
    if FLAGS.preset not in list_presets("Bert"):
        raise app.UsageError(f"--preset={FLAGS.preset} is not one of {list_presets('Bert')}.")
    if not 0.0 < FLAGS.validation_fraction < 1.0:
        raise app.UsageError("--validation_fraction must be in (0, 1).")


def split_documents(documents: list[list[str]]) -> tuple[list, list]:
    """The last `validation_fraction` of the documents (at least two) is held out."""
    held_out = max(2, round(FLAGS.validation_fraction * len(documents)))
    if len(documents) - held_out < 2:
        raise ValueError(
            f"{FLAGS.text_file} has {len(documents)} documents: too few to hold out "
            f"{held_out} and train on at least 2. Give a longer corpus (documents are separated "
            "by blank lines) or a smaller --validation_fraction.")
    return documents[:-held_out], documents[-held_out:]


def load_tokenizer(run: finetuning.FinetuningRun, train_documents) -> tuple[WordPieceTokenizer,
                                                                               str]:
    """--vocab_file; else the vocabulary beside --init_checkpoint; else one built here."""
    checkpoint = FLAGS.init_checkpoint
    if FLAGS.vocab_file or (checkpoint and os.path.isdir(checkpoint)):
        path = run.vocabulary_path()
        if os.path.basename(path) == "vocab.txt":  # Casing from tokenizer_config.json.
            tokenizer = WordPieceTokenizer.from_pretrained(os.path.dirname(path) or ".")
        else:
            tokenizer = WordPieceTokenizer(path)
        check_pretraining_vocabulary(tokenizer.get_vocabulary(), path)
        return tokenizer, path
    if checkpoint:
        raise app.UsageError(f"--init_checkpoint={checkpoint} brings no vocab.txt; pass the "
                             "vocabulary it was trained with as --vocab_file.")
    path = os.path.join(run.output_dir, "vocab.txt")
    if not os.path.isfile(path):  # A resumed run keeps the vocabulary of its first start.
        logging.info("building a WordPiece vocabulary of at most %d pieces", FLAGS.vocab_size)
        build_vocabulary([line for document in train_documents for line in document],
                         FLAGS.vocab_size, path)
    return load_pretraining_tokenizer(path), path


def unigram_mlm_loss(train: NspPairs, eval_batches, vocab_size: int) -> float:
    """Cross-entropy of the held-out masked tokens under the training tokens' unigram
    distribution (add-one smoothed): the MLM loss of a model that ignores context."""
    counts = np.bincount(train.token_ids[train.padding_mask], minlength=vocab_size)
    counts = counts.astype("float64") + 1.0
    log_probs = np.log(counts / counts.sum())
    total, weight = 0.0, 0.0
    for _, labels, weights in eval_batches:
        ids, w = labels["mlm_logits"].numpy(), weights["mlm_logits"].numpy()
        total -= float((log_probs[ids] * w).sum())
        weight += float(w.sum())
    return total / max(weight, 1.0)


def compile_pretrainer(run: finetuning.FinetuningRun, model: BertPretrainer,
                       num_train_pairs: int) -> None:
    cross_entropy = keras.losses.SparseCategoricalCrossentropy
    run.compile(
        model,
        # The MLM loss is the mean over the real predictions (unused slots weigh 0).
        loss={"mlm_logits": cross_entropy(from_logits=True, reduction="mean_with_sample_weight"),
              "nsp_logits": cross_entropy(from_logits=True)},
        weighted_metrics={"mlm_logits": [keras.metrics.SparseCategoricalAccuracy("accuracy")],
                          "nsp_logits": [keras.metrics.SparseCategoricalAccuracy("accuracy")]},
        num_train_examples=num_train_pairs,
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    check_flags()
    try:  # The settings are checked together, before anything loads.
        config = finetuning.FinetuningConfig.from_flags(
            init_checkpoint=FLAGS.init_checkpoint or FLAGS.preset)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    documents = read_documents(FLAGS.text_file)
    train_documents, eval_documents = split_documents(documents)

    run = finetuning.FinetuningRun(config, primary_metric="mlm_accuracy")
    tokenizer, vocab_path = load_tokenizer(run, train_documents)
    run.preprocessor = BertPreprocessor(tokenizer, sequence_length=config.max_seq_length)
    model = run.load_model(BertPretrainer, vocab_size=tokenizer.vocabulary_size())
    if model.backbone.vocab_size != tokenizer.vocabulary_size():
        raise ValueError(f"{config.init_checkpoint} has a vocabulary of "
                         f"{model.backbone.vocab_size} tokens, but {vocab_path} has "
                         f"{tokenizer.vocabulary_size()}; pass the model's own vocabulary.")

    def make_pairs(docs, seed):
        return create_nsp_pairs(
            tokenize_documents(docs, tokenizer), config.max_seq_length,
            cls_id=tokenizer.special_token_id("cls"), sep_id=tokenizer.special_token_id("sep"),
            pad_id=tokenizer.special_token_id("pad"), seed=seed,
            short_seq_prob=FLAGS.short_seq_prob, dupe_factor=FLAGS.dupe_factor)

    train_pairs = make_pairs(train_documents, config.seed)
    eval_pairs = make_pairs(eval_documents, config.seed + 1)
    if config.max_train_examples:
        train_pairs = train_pairs.take(config.max_train_examples)
    if config.max_eval_examples:
        eval_pairs = eval_pairs.take(config.max_eval_examples)
    logging.info("%d training and %d held-out pairs (%.1f%% / %.1f%% with a random B), "
                 "vocabulary of %d from %s", len(train_pairs), len(eval_pairs),
                 100 * train_pairs.next_sentence_labels.mean(),
                 100 * eval_pairs.next_sentence_labels.mean(), tokenizer.vocabulary_size(),
                 vocab_path)

    masker = MaskedLmMasker(tokenizer, masked_lm_prob=FLAGS.masked_lm_prob,
                            max_predictions_per_seq=FLAGS.max_predictions_per_seq,
                            whole_word_masking=FLAGS.whole_word_masking)
    train_batches = pretraining_dataset(train_pairs, masker, config.batch_size, seed=config.seed)
    # Fixed masks (one seed) for the held-out pairs: every evaluation scores the same tokens.
    eval_batches = pretraining_dataset(eval_pairs, masker, config.eval_batch_size,
                                       seed=config.seed + 1, shuffle=False, repeat=False,
                                       drop_remainder=False).cache()

    compile_pretrainer(run, model, len(train_pairs))

    def evaluate(model) -> dict[str, float]:
        logs = model.evaluate(eval_batches, return_dict=True, verbose=0)
        return {"mlm_loss": logs["mlm_logits_loss"], "mlm_accuracy": logs["mlm_logits_accuracy"],
                "nsp_loss": logs["nsp_logits_loss"], "nsp_accuracy": logs["nsp_logits_accuracy"]}

    initial_path = os.path.join(run.output_dir, "evaluation", "initial.json")
    if read_checkpoint_state(run.checkpoint_dir) is None and not os.path.exists(initial_path):
        os.makedirs(os.path.dirname(initial_path), exist_ok=True)
        with open(initial_path, "w") as f:
            json.dump(evaluate(model), f)
    with open(initial_path) as f:
        initial = json.load(f)

    summary = run.fit(model, train_batches, evaluate=evaluate, verbose=2)
    final = summary["eval_history"][-1]
    if FLAGS.save_model and run.chief:
        model.save(os.path.join(run.output_dir, "pretrainer.keras"))
    run.write_results({
        **{key: final[key] for key in ("mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy")},
        "initial": initial,
        "unigram_mlm_loss": unigram_mlm_loss(train_pairs, eval_batches,
                                             tokenizer.vocabulary_size()),
        **summary,
        "parameters": int(model.count_params()),
        "vocab_file": vocab_path,
        "vocab_size": tokenizer.vocabulary_size(),
        "num_train_pairs": len(train_pairs),
        "num_eval_pairs": len(eval_pairs),
        "random_next_share": float(train_pairs.next_sentence_labels.mean()),
        "whole_word_masking": FLAGS.whole_word_masking,
    })
    run.export(model.backbone, run.preprocessor)


if __name__ == "__main__":
    app.run(main)
