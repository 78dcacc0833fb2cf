"""(input, target) text pairs from local files, for sequence-to-sequence models."""

from __future__ import annotations

import json
from pathlib import Path

from keras_llm.data.sample import read_labelled_tsv


def read_text_pairs(path: str | Path) -> tuple[list[str], list[str]]:
    """`(inputs, targets)` from a TSV with `input` and `target` columns, or a JSONL file
    of `{"input": ..., "target": ...}` objects. Errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Data file not found: {path}.")
    if path.suffix == ".jsonl":
        inputs, targets = [], []
        for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                inputs.append(str(record["input"]))
                targets.append(str(record["target"]))
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(
                    f"{path}:{line_number}: expected a JSON object with 'input' and 'target' "
                    f"({error})."
                ) from None
        if not inputs:
            raise ValueError(f"{path} holds no examples.")
        return inputs, targets
    import csv

    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or rows[0][:2] != ["input", "target"]:
        raise ValueError(f"{path}:1: expected the header 'input<TAB>target'; got {rows[:1]}.")
    for line_number, row in enumerate(rows[1:], 2):
        if len(row) != 2:
            raise ValueError(f"{path}:{line_number}: {len(row)} columns where 2 are expected.")
    return [r[0] for r in rows[1:]], [r[1] for r in rows[1:]]


SST2_LABELS = ("negative", "positive")


def sst2_as_text_to_text(path: str | Path) -> tuple[list[str], list[str]]:
    """GLUE SST-2 (`sentence<TAB>label` TSV) phrased as T5 does:
    `"sst2 sentence: ..."` -> `"negative"` / `"positive"`."""
    sentences, labels = read_labelled_tsv(path)
    bad = [i + 2 for i, label in enumerate(labels) if label not in (0, 1)]
    if bad:
        raise ValueError(f"{path}:{bad[0]}: SST-2 labels are 0 or 1.")
    return [f"sst2 sentence: {s}" for s in sentences], [SST2_LABELS[label] for label in labels]
