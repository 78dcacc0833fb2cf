"""Entity-level NER scores, as `seqeval` computes them in its default (conlleval) mode.

Tags are `"O"` or a prefix and a type joined by a hyphen: `"B-PER"`, `"I-LOC"` (and `"E-"` /
`"S-"` from IOBES, read the conlleval way). A bare prefix (`"B"`, `"I"`, `"E"`, `"S"`) is an
untyped chunk whose type is `"_"`, as in seqeval. Chunks follow conlleval's lenient rules rather
than a strict scheme, so IOB1 (CoNLL-2003's files, where `I-` starts an entity unless it
continues one of the same type) and IOB2 (every entity starts with `B-`) both read correctly,
and an `I-` tag that follows `O` or another type starts a new entity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

_PREFIXES = ("B", "I", "E", "S")


def _split(tag: str, where: str) -> tuple[str, str]:
    """`(prefix, type)` of one tag; the type of "O" and of a bare prefix is "_"."""
    if tag == "O":
        return "O", "_"
    if isinstance(tag, str):
        if tag in _PREFIXES:
            return tag, "_"
        if len(tag) > 2 and tag[0] in _PREFIXES and tag[1] == "-":
            return tag[0], tag[2:]
    raise ValueError(
        f"Tag {tag!r} {where} is not an entity tag: use 'O' or a prefix B, I, E or S and a type "
        "joined by a hyphen, such as 'B-PER' or 'I-LOC' (IOB1, IOB2 or IOBES)."
    )


def _ends(prev_prefix: str, prev_type: str, prefix: str, type_: str) -> bool:
    """Whether the chunk open at the previous token ends before this one (conlleval)."""
    if prev_prefix in ("E", "S"):
        return True
    if prev_prefix in ("B", "I") and prefix in ("B", "S", "O"):
        return True
    return prev_prefix != "O" and prev_type != type_


def _starts(prev_prefix: str, prev_type: str, prefix: str, type_: str) -> bool:
    """Whether a chunk starts at this token (conlleval)."""
    if prefix in ("B", "S"):
        return True
    if prev_prefix in ("E", "S", "O") and prefix in ("E", "I"):
        return True
    return prefix != "O" and prev_type != type_


def _extract(tags: Sequence[str], sentence: int | None) -> list[tuple[str, int, int]]:
    entities = []
    prev_prefix, prev_type, begin = "O", "_", 0
    for position, tag in enumerate([*tags, "O"]):
        where = f"at position {position}" + ("" if sentence is None else f" of sentence {sentence}")
        prefix, type_ = _split(tag, where)
        if _ends(prev_prefix, prev_type, prefix, type_):
            entities.append((prev_type, begin, position))
        if _starts(prev_prefix, prev_type, prefix, type_):
            begin = position
        prev_prefix, prev_type = prefix, type_
    return entities


def extract_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities in one tag sequence, as `(type, start, end)` with `end` EXCLUSIVE.

    `tags[start:end]` are the entity's tokens (seqeval's `get_entities` reports the last
    token instead, `end - 1`). Entities come in order of their end.

    Example:
    >>> extract_entities(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC"])
    [('PER', 0, 2), ('LOC', 3, 4), ('LOC', 4, 6)]
    """
    if isinstance(tags, str):
        raise ValueError(f"`tags` is the string {tags!r}; pass a sequence of tags, one a token.")
    return _extract(tags, None)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 2 * precision * recall / total if total else 0.0


def entity_scores(
    true_sequences: Sequence[Sequence[str]], predicted_sequences: Sequence[Sequence[str]]
) -> dict:
    """Entity-level precision, recall and F1 over a corpus, and token accuracy.

    An entity counts as found only if the prediction has the same type and the same first
    and last token (seqeval's default mode, conlleval's numbers). Scores are fractions in
    [0, 1]; an undefined ratio (no predicted or no true entity) is 0.0, as in seqeval.

    Returns:
        `precision`, `recall`, `f1` (micro-averaged over all entities), `accuracy` (share of
        tokens whose tag is right, "O" included), and `per_type`: for every type that occurs
        in the labels or the predictions, `{"precision", "recall", "f1", "support"}` where
        support is the number of true entities of that type.

    Example:
    >>> scores = entity_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    >>> scores["precision"], scores["recall"], round(scores["f1"], 4), scores["accuracy"]
    (1.0, 0.5, 0.6667, 0.75)
    >>> scores["per_type"]["LOC"]
    {'precision': 0.0, 'recall': 0.0, 'f1': 0.0, 'support': 1}
    """
    for name, value in (("true_sequences", true_sequences),
                        ("predicted_sequences", predicted_sequences)):
        if isinstance(value, str) or (len(value) and isinstance(value[0], str)):
            raise ValueError(
                f"`{name}` looks like one sentence of tags; pass a list of sentences, each a "
                "list of tags, e.g. `[['B-PER', 'O']]`."
            )
    if len(true_sequences) != len(predicted_sequences):
        raise ValueError(
            f"{len(true_sequences)} true sentences but {len(predicted_sequences)} predicted "
            "ones; pass one predicted tag sequence per sentence."
        )
    true_counts: Counter[str] = Counter()
    pred_counts: Counter[str] = Counter()
    hit_counts: Counter[str] = Counter()
    correct_tokens = total_tokens = 0
    for index, (true_tags, pred_tags) in enumerate(
        zip(true_sequences, predicted_sequences, strict=True)
    ):
        if len(true_tags) != len(pred_tags):
            raise ValueError(
                f"Sentence {index} has {len(true_tags)} true tags but {len(pred_tags)} predicted "
                "tags; predict exactly one tag per token (map word pieces back to words first)."
            )
        true_entities = set(_extract(true_tags, index))
        pred_entities = set(_extract(pred_tags, index))
        true_counts.update(type_ for type_, _, _ in true_entities)
        pred_counts.update(type_ for type_, _, _ in pred_entities)
        hit_counts.update(type_ for type_, _, _ in true_entities & pred_entities)
        correct_tokens += sum(t == p for t, p in zip(true_tags, pred_tags, strict=True))
        total_tokens += len(true_tags)
    if total_tokens == 0:
        raise ValueError("The sentences hold no tokens; there is nothing to score.")

    per_type = {}
    for type_ in sorted(set(true_counts) | set(pred_counts)):
        precision = _ratio(hit_counts[type_], pred_counts[type_])
        recall = _ratio(hit_counts[type_], true_counts[type_])
        per_type[type_] = {
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
            "support": true_counts[type_],
        }
    precision = _ratio(sum(hit_counts.values()), sum(pred_counts.values()))
    recall = _ratio(sum(hit_counts.values()), sum(true_counts.values()))
    return {
        "precision": precision,
        "recall": recall,
        "f1": _f1(precision, recall),
        "accuracy": correct_tokens / total_tokens,
        "per_type": per_type,
    }
