"""A small sentiment data set and WordPiece vocabulary that ship with the package.

320 short movie-review sentences written for keras-llm (label 1 positive, 0
negative) and a 158-token uncased vocabulary covering them, so the quickstart
trains, evaluates and saves a model on a fresh machine without any download.
"""

from __future__ import annotations

import csv
from pathlib import Path

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"


def read_labelled_tsv(path: str | Path, text_column: str = "sentence",
                      label_column: str = "label") -> tuple[list[str], list[int]]:
    """Reads `(texts, integer labels)` from a TSV with a header row.

    Raises a `ValueError` naming the file and line for a missing column, a row
    of the wrong width or a label that is not an integer.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Data file not found: {path}.")
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise ValueError(f"{path} is empty; expected a header row with {text_column!r} and "
                         f"{label_column!r}.")
    header = rows[0]
    for column in (text_column, label_column):
        if column not in header:
            raise ValueError(f"{path}:1: no column {column!r} in the header {header}.")
    text_index, label_index = header.index(text_column), header.index(label_column)
    texts, labels = [], []
    for line_number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(
                f"{path}:{line_number}: {len(row)} columns where the header has {len(header)}."
            )
        try:
            labels.append(int(row[label_index]))
        except ValueError:
            raise ValueError(
                f"{path}:{line_number}: label {row[label_index]!r} is not an integer."
            ) from None
        texts.append(row[text_index])
    return texts, labels


def load_sample_sentiment() -> tuple[list[str], list[int]]:
    """The shipped sample: `(sentences, labels)`, 320 rows, already shuffled."""
    return read_labelled_tsv(SAMPLE_DIR / "sentiment.tsv")
