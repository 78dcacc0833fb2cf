"""BERT pretraining data: documents, vocabulary, NSP pairs, MLM masking, the tf.data stream."""

import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_llm
from keras_llm.data import pretraining
from keras_llm.data.pretraining import (
    SPECIAL_TOKENS,
    MaskedLmMasker,
    build_vocabulary,
    check_pretraining_vocabulary,
    create_nsp_pairs,
    load_pretraining_tokenizer,
    pretraining_dataset,
    read_documents,
    tokenize_documents,
)
from keras_llm.tokenizers import WordPieceTokenizer

PAD, UNK, CLS, SEP, MASK = range(5)
# 5 specials, 2 bracketed non-specials, 200 words, 100 "##" continuation pieces.
VOCAB = [*SPECIAL_TOKENS, "[unused0]", "[unused1]", *(f"w{i}" for i in range(200)),
         *(f"##p{i}" for i in range(100))]
FIRST_WORD, FIRST_PIECE = 7, 207


def test_docstring_examples():
    result = doctest.testmod(pretraining, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --- Documents -------------------------------------------------------------------------------
def test_read_documents_splits_on_blank_lines(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n  First line.  \nSecond line.\n\n\n \t\nOther doc.\n\nThird.\nMore.")
    assert read_documents(path) == [["First line.", "Second line."], ["Other doc."],
                                    ["Third.", "More."]]


def test_read_documents_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_documents(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\n \n")
    with pytest.raises(ValueError, match=r"empty\.txt holds no text.*blank line"):
        read_documents(empty)
    single = tmp_path / "single.txt"
    single.write_text("One document.\nStill the same one.\n")
    with pytest.raises(ValueError, match=r"single\.txt holds 1 document.*at least 2.*blank"):
        read_documents(single)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("ok\n\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt:3 is not valid UTF-8.*iconv"):
        read_documents(latin1)


# --- Vocabulary ------------------------------------------------------------------------------
def test_vocabulary_loads_in_word_piece_tokenizer_and_covers_the_corpus(tmp_path, shared_data):
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines()[:3000] if line.strip()]
    lines += ["Café NAÏVE Ærøskøbing — “quoted” 北京 x²"]  # Accents, Unicode punctuation, CJK.
    path = tmp_path / "vocab.txt"
    vocab = build_vocabulary(lines, 1500, path)
    assert path.read_text(encoding="utf-8").splitlines() == vocab
    assert vocab[:5] == list(SPECIAL_TOKENS) and len(set(vocab)) == len(vocab)
    assert 1000 < len(vocab) <= 1500
    assert "é" not in vocab and "e" in vocab  # Normalised as the uncased tokenizer does.

    tokenizer = load_pretraining_tokenizer(path)
    ids = tokenizer(lines)
    assert tokenizer.unknown_token_id not in ids.flat_values.numpy()
    # Every word is covered: the pieces join back to the normalised text.
    words = tokenizer.detokenize(tokenizer(["Second Citizen: Would you proceed especially?"]))
    assert words.numpy()[0].decode() == "second citizen : would you proceed especially ?"


def test_vocabulary_size_is_respected_and_errors(tmp_path):
    lines = [f"word{i % 97} and other{i % 13} things, said person{i % 31}." for i in range(600)]
    small = build_vocabulary(lines, 60)
    large = build_vocabulary(lines, 400)
    assert len(small) <= 60 < len(large) <= 400
    with pytest.raises(ValueError, match="empty"):
        build_vocabulary(["", "  "], 100)
    with pytest.raises(ValueError, match="vocab_size=5 leaves no room"):
        build_vocabulary(lines, 5)


def test_vocabulary_without_mask_is_rejected(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(ValueError, match=r"vocab\.txt lacks \[MASK\].*Add the token"):
        load_pretraining_tokenizer(path)
    with pytest.raises(ValueError, match=r"lacks \[CLS\], \[MASK\]"):
        check_pretraining_vocabulary(["[PAD]", "[UNK]", "[SEP]"])
    with pytest.raises(ValueError, match=r"lacks \[MASK\]"):
        MaskedLmMasker(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"])


# --- Next-sentence pairs ---------------------------------------------------------------------
def synthetic_documents(num_documents=400, seed=0, lines=(2, 8), tokens=(3, 30)):
    """Documents whose tokens name their document: token = 1000 * document + k."""
    rng = np.random.default_rng(seed)
    return [
        [list(1000 * d + rng.integers(0, 999, size=rng.integers(*tokens)))
         for _ in range(rng.integers(*lines))]
        for d in range(1, num_documents + 1)
    ]


def test_nsp_pairs_are_packed_and_half_random():
    documents = synthetic_documents()
    pairs = create_nsp_pairs(documents, 64, cls_id=CLS, sep_id=SEP, pad_id=PAD, seed=3)
    assert pairs.token_ids.shape == pairs.segment_ids.shape == (len(pairs), 64)
    assert abs(pairs.next_sentence_labels.mean() - 0.5) < 0.03
    for row in range(len(pairs)):
        ids, segments = pairs.token_ids[row], pairs.segment_ids[row]
        length = int(pairs.padding_mask[row].sum())
        assert pairs.padding_mask[row, :length].all() and (ids[length:] == PAD).all()
        seps = np.flatnonzero(ids == SEP)
        assert ids[0] == CLS and len(seps) == 2 and seps[1] == length - 1
        a, b = ids[1 : seps[0]], ids[seps[0] + 1 : seps[1]]
        assert len(a) and len(b)
        assert (segments[: seps[0] + 1] == 0).all() and (segments[seps[0] + 1 : length] == 1).all()
        assert (segments[length:] == 0).all()
        same_document = set(a // 1000) == set(b // 1000) and len(set(a // 1000)) == 1
        # Label 0: B continues A's document; label 1: B comes from another document.
        assert same_document == (pairs.next_sentence_labels[row] == 0)


def test_nsp_labels_stay_balanced_on_short_documents():
    # Two-line documents (tiny Shakespeare's speaker + one line): the original rule, which
    # makes every leftover single line a random pair, would give about 2/3 random pairs.
    documents = synthetic_documents(600, seed=1, lines=(2, 3))
    pairs = create_nsp_pairs(documents, 128, cls_id=CLS, sep_id=SEP, seed=0)
    assert abs(pairs.next_sentence_labels.mean() - 0.5) < 0.03


def test_nsp_pairs_are_seeded_and_respect_lengths():
    documents = synthetic_documents(50)
    first = create_nsp_pairs(documents, 32, cls_id=CLS, sep_id=SEP, seed=7)
    again = create_nsp_pairs(documents, 32, cls_id=CLS, sep_id=SEP, seed=7)
    other = create_nsp_pairs(documents, 32, cls_id=CLS, sep_id=SEP, seed=8)
    np.testing.assert_array_equal(first.token_ids, again.token_ids)
    assert first.token_ids.shape != other.token_ids.shape or (
        first.token_ids != other.token_ids).any()
    doubled = create_nsp_pairs(documents, 32, cls_id=CLS, sep_id=SEP, seed=7, dupe_factor=2)
    assert len(doubled) > 1.5 * len(first)
    assert first.take(3).token_ids.shape == (3, 32)


def test_nsp_pairs_errors():
    with pytest.raises(ValueError, match="got 1 non-empty document.*at least 2"):
        create_nsp_pairs([[[5, 6], [7]], [[]]], 16, cls_id=CLS, sep_id=SEP)
    with pytest.raises(ValueError, match="max_seq_length=4 is too short"):
        create_nsp_pairs(synthetic_documents(3), 4, cls_id=CLS, sep_id=SEP)


def test_tokenize_documents_drops_empty_sentences():
    tokenizer = WordPieceTokenizer(["[UNK]", "a", "b"])
    documents = tokenize_documents([["a b", "\u200b"], ["\x01"], ["b"]], tokenizer)
    assert [[row.tolist() for row in document] for document in documents] == [[[1, 2]], [[2]]]


# --- Masking ---------------------------------------------------------------------------------
def packed_batch(batch=1024, length=128, seed=0):
    """[CLS] words [SEP] words [SEP] [PAD]...; words of 1-3 pieces."""
    rng = np.random.default_rng(seed)
    rows = np.full((batch, length), PAD, "int32")
    for row in range(batch):
        used = int(rng.integers(20, length + 1))
        tokens = rng.integers(FIRST_WORD, FIRST_PIECE, size=used)
        pieces = rng.random(used) < 0.3  # About 30% continuation pieces.
        tokens[pieces] = rng.integers(FIRST_PIECE, len(VOCAB), size=pieces.sum())
        tokens[0], tokens[used - 1] = CLS, SEP
        tokens[1] = FIRST_WORD  # A word start after [CLS].
        tokens[int(rng.integers(3, used - 2))] = SEP
        rows[row, :used] = tokens
    return rows


def test_masking_statistics():
    ids = packed_batch()
    masker = MaskedLmMasker(VOCAB, masked_lm_prob=0.15, max_predictions_per_seq=20)
    out = {k: v.numpy() for k, v in masker(ids, seed=[4, 2]).items()}
    weights, positions = out["mask_weights"], out["mask_positions"]
    assert weights.shape == positions.shape == (len(ids), 20)

    special = np.isin(ids, [PAD, CLS, SEP, MASK])
    maskable = (~special).sum(1)
    expected = np.clip(np.round(0.15 * maskable), 1, 20)
    np.testing.assert_array_equal(weights.sum(1), expected)
    # ~15% of the non-special tokens selected (exactly, up to rounding and the cap).
    assert abs(weights.sum() / maskable.sum() - 0.15) < 0.01

    rows = np.repeat(np.arange(len(ids))[:, None], 20, axis=1)
    selected = weights > 0
    chosen_rows, chosen_positions = rows[selected], positions[selected]
    assert not special[chosen_rows, chosen_positions].any()  # Never a special token.
    np.testing.assert_array_equal(out["mask_ids"][selected], ids[chosen_rows, chosen_positions])
    assert (positions[~selected] == 0).all() and (out["mask_ids"][~selected] == 0).all()
    for row in range(50):  # Ascending, distinct positions.
        real = positions[row][weights[row] > 0]
        assert (np.diff(real) > 0).all()

    # 80% [MASK], 10% a random token, 10% unchanged.
    new = out["token_ids"][chosen_rows, chosen_positions]
    old = ids[chosen_rows, chosen_positions]
    is_mask, kept = new == MASK, new == old
    replaced = ~is_mask & ~kept
    assert abs(is_mask.mean() - 0.8) < 0.015
    assert abs(kept.mean() - 0.1) < 0.015
    assert abs(replaced.mean() - 0.1) < 0.015
    # Random replacements are ordinary tokens, never specials or [unused*].
    assert (new[replaced] >= FIRST_WORD).all()
    # Tokens not selected are untouched.
    untouched = np.ones_like(ids, bool)
    untouched[chosen_rows, chosen_positions] = False
    np.testing.assert_array_equal(out["token_ids"][untouched], ids[untouched])


def word_ids(row):
    """Word index per token: a "##" piece joins the word before it (unless that is special)."""
    words, current, previous = [], -1, PAD
    for token in row:
        if token < FIRST_PIECE or previous in (PAD, CLS, SEP, MASK):
            current += 1
        words.append(current)
        previous = token
    return np.array(words)


def test_whole_word_masking_selects_every_piece_of_a_word():
    ids = packed_batch(512, seed=1)
    masker = MaskedLmMasker(VOCAB, max_predictions_per_seq=20, whole_word_masking=True)
    out = {k: v.numpy() for k, v in masker(ids, seed=[9, 9]).items()}
    selected_fraction = []
    whole_word_treatments = 0
    for row in range(len(ids)):
        chosen = out["mask_positions"][row][out["mask_weights"][row] > 0]
        words = word_ids(ids[row])
        chosen_words = set(words[chosen])
        expected = np.flatnonzero(np.isin(words, list(chosen_words)))
        np.testing.assert_array_equal(np.sort(chosen), expected)  # All pieces, or none.
        assert not np.isin(ids[row, chosen], [PAD, CLS, SEP]).any()
        for word in chosen_words:  # One 80/10/10 draw per word.
            where = np.flatnonzero(words == word)
            as_mask = out["token_ids"][row, where] == MASK
            assert as_mask.all() or not as_mask.any()
            whole_word_treatments += len(where) > 1
        maskable = (~np.isin(ids[row], [PAD, CLS, SEP])).sum()
        selected_fraction.append(len(chosen) / maskable)
    assert whole_word_treatments > 500  # Multi-piece words were selected.
    # Whole words are taken while they fit the budget: a little under 15%.
    assert 0.12 < np.mean(selected_fraction) <= 0.15


def test_masking_is_a_function_of_the_seed_and_works_in_a_graph():
    ids = packed_batch(8)
    masker = MaskedLmMasker(VOCAB, whole_word_masking=True)
    first, again = masker(ids, seed=[1, 5]), masker(ids, seed=[1, 5])
    other = masker(ids, seed=[1, 6])
    np.testing.assert_array_equal(first["token_ids"], again["token_ids"])
    assert (first["mask_positions"].numpy() != other["mask_positions"].numpy()).any()
    graph = tf.function(lambda t, s: masker(t, s))(tf.constant(ids), tf.constant([1, 5]))
    np.testing.assert_array_equal(graph["token_ids"], first["token_ids"])


def test_masking_edge_cases():
    masker = MaskedLmMasker(VOCAB, masked_lm_prob=0.15, max_predictions_per_seq=4)
    # Nothing to mask, one token to mask, fewer tokens than slots.
    ids = np.array([[CLS, SEP, SEP, PAD], [CLS, 50, SEP, SEP]], "int32")
    out = masker(ids, seed=0)
    assert out["mask_weights"].numpy().tolist() == [[0, 0, 0, 0], [1, 0, 0, 0]]
    assert out["mask_positions"].numpy().tolist() == [[0, 0, 0, 0], [1, 0, 0, 0]]
    with pytest.raises(ValueError, match="masked_lm_prob"):
        MaskedLmMasker(VOCAB, masked_lm_prob=1.5)
    with pytest.raises(ValueError, match="max_predictions_per_seq"):
        MaskedLmMasker(VOCAB, max_predictions_per_seq=0)
    with pytest.raises(ValueError, match=r"\[batch, length\]"):
        masker(np.array([CLS, 50, SEP]), seed=0)


# --- The tf.data stream ----------------------------------------------------------------------
def make_pairs():
    documents = [[list(FIRST_WORD + (np.arange(n) * 7 + d) % 300) for n in (5, 9, 4)]
                 for d in range(40)]
    return create_nsp_pairs(documents, 32, cls_id=CLS, sep_id=SEP, seed=0)


def test_dataset_is_deterministic_and_resumable():
    pairs = make_pairs()
    masker = MaskedLmMasker(VOCAB, max_predictions_per_seq=5)

    def batches(skip=0, count=6):
        dataset = pretraining_dataset(pairs, masker, batch_size=8, seed=3).skip(skip)
        return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in dataset.take(count)]

    stream = batches()
    inputs, labels, weights = stream[0]
    assert sorted(inputs) == ["mask_positions", "padding_mask", "segment_ids", "token_ids"]
    assert inputs["token_ids"].shape == (8, 32) and inputs["mask_positions"].shape == (8, 5)
    assert labels["mlm_logits"].shape == weights["mlm_logits"].shape == (8, 5)
    assert labels["nsp_logits"].shape == (8,) and (weights["nsp_logits"] == 1).all()
    assert inputs["padding_mask"].dtype == bool
    # Same seed: same stream; skipping (as a resumed run does) lands on the same batches.
    tf.nest.map_structure(np.testing.assert_array_equal, stream, batches())
    tf.nest.map_structure(np.testing.assert_array_equal, stream[4:], batches(skip=4, count=2))
    # Endless, with fresh masks on each pass over the pairs.
    passes = len(pairs) // 8 + 1
    later = batches(skip=passes, count=1)[0][0]["mask_positions"]
    assert not np.array_equal(later, stream[0][0]["mask_positions"])


def test_evaluation_dataset_keeps_every_pair():
    pairs = make_pairs()
    masker = MaskedLmMasker(VOCAB, max_predictions_per_seq=5)
    dataset = pretraining_dataset(pairs, masker, 16, shuffle=False, repeat=False,
                                  drop_remainder=False)
    labels = np.concatenate([b[1]["nsp_logits"].numpy() for b in dataset])
    np.testing.assert_array_equal(labels, pairs.next_sentence_labels)
    with pytest.raises(ValueError, match="no pairs"):
        pretraining_dataset(pairs.take(0), masker, 4)


def test_bert_pretrainer_trains_on_the_stream():
    pairs = make_pairs()
    masker = MaskedLmMasker(VOCAB, max_predictions_per_seq=5, whole_word_masking=True)
    bert = keras_llm.models.Bert(vocab_size=len(VOCAB), num_layers=1, num_heads=2,
                                 hidden_size=16, intermediate_size=32, max_sequence_length=32)
    model = keras_llm.models.BertPretrainer(bert)
    loss = keras.losses.SparseCategoricalCrossentropy
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss={"mlm_logits": loss(from_logits=True, reduction="mean_with_sample_weight"),
              "nsp_logits": loss(from_logits=True)},
        weighted_metrics={"mlm_logits": ["accuracy"], "nsp_logits": ["accuracy"]},
    )
    history = model.fit(pretraining_dataset(pairs, masker, 8), steps_per_epoch=10, epochs=3,
                        verbose=0)
    mlm_losses = history.history["mlm_logits_loss"]
    assert np.isfinite(mlm_losses).all() and mlm_losses[-1] < mlm_losses[0]
