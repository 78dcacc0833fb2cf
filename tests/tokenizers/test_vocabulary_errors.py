"""A wrong vocabulary path is reported as what it is: a missing path or a folder without
vocab.txt, not as a missing vocab.txt file."""

from __future__ import annotations

import pytest

from keras_llm.tokenizers import BertPreprocessor, WordPieceTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat"]


@pytest.mark.parametrize("load", [WordPieceTokenizer.from_pretrained,
                                  BertPreprocessor.from_pretrained])
def test_a_missing_path_and_a_folder_without_vocab_txt(tmp_path, load):
    missing = tmp_path / "nonexistent"
    with pytest.raises(FileNotFoundError) as error:
        load(missing)
    assert str(error.value).startswith(f"'{missing}' does not exist: pass a folder that holds "
                                       "a WordPiece vocab.txt")
    folder = tmp_path / "t5"
    folder.mkdir()
    (folder / "spiece.model").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"The folder '.*t5' has no vocab\.txt, so it is "
                       r"not a BERT \(WordPiece\) checkpoint folder \(it holds spiece\.model\)"):
        load(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no vocab\.txt.*\(it is empty\)"):
        load(empty)


def test_a_folder_or_a_vocab_txt_still_loads(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    assert WordPieceTokenizer.from_pretrained(tmp_path).vocabulary_size() == len(VOCAB)
    assert WordPieceTokenizer.from_pretrained(tmp_path / "vocab.txt").vocabulary_size() == 7
    assert BertPreprocessor.from_pretrained(tmp_path, sequence_length=8).sequence_length == 8
