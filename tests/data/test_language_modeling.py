import numpy as np
import pytest

from keras_llm.data import (
    load_sample_sentiment,
    pack_blocks,
    read_labelled_tsv,
    read_text_file,
    tokenize_text,
    unigram_cross_entropy,
)
from keras_llm.tokenizers import ByteTokenizer


def test_tokenize_text_in_chunks_equals_whole():
    text = "".join(f"line {i}: ünïcode ✓\n" for i in range(500))
    ids = tokenize_text(text, ByteTokenizer(), chunk_characters=300)
    np.testing.assert_array_equal(ids, np.frombuffer(text.encode(), np.uint8))


def test_pack_blocks():
    blocks = pack_blocks(np.arange(10), 4, stride=2)
    np.testing.assert_array_equal(blocks, [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7],
                                           [6, 7, 8, 9]])
    with pytest.raises(ValueError, match="fewer than one block"):
        pack_blocks(np.arange(3), 4)


def test_unigram_cross_entropy():
    train = np.array([0, 0, 1, 1])
    assert unigram_cross_entropy(train, np.array([0, 1]), 2) == pytest.approx(np.log(2))


def test_read_text_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_text_file(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="not valid UTF-8"):
        read_text_file(tmp_path / "latin1.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(ValueError, match="holds no text"):
        read_text_file(tmp_path / "empty.txt")


def test_sample_and_tsv_errors(tmp_path):
    sentences, labels = load_sample_sentiment()
    assert len(sentences) == len(labels) == 320 and set(labels) == {0, 1}
    path = tmp_path / "bad.tsv"
    path.write_text("text\tlabel\nfine\t1\n")
    with pytest.raises(ValueError, match="no column 'sentence'"):
        read_labelled_tsv(path)
    path.write_text("sentence\tlabel\nfine\t1\nbroken\n")
    with pytest.raises(ValueError, match=r"bad.tsv:3: 1 columns"):
        read_labelled_tsv(path)
    path.write_text("sentence\tlabel\nfine\tpositive\n")
    with pytest.raises(ValueError, match=r"bad.tsv:2: label 'positive'"):
        read_labelled_tsv(path)
