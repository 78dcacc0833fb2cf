"""Entity-level NER scores against seqeval's default (conlleval) mode."""

import doctest
import warnings

import numpy as np
import pytest

# The reference (the [test] extra): a missing one fails the run instead of skipping it.
import seqeval.metrics as seqeval_metrics  # noqa: E402
from seqeval.metrics.sequence_labeling import get_entities  # noqa: E402

from keras_llm.metrics import entity_scores, extract_entities
from keras_llm.metrics import sequence_labeling as sequence_labeling_module


def _seqeval_scores(true_sequences, predicted_sequences):
    """seqeval's numbers in the layout `entity_scores` returns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Undefined ratios warn and are set to 0.
        report = seqeval_metrics.classification_report(
            true_sequences, predicted_sequences, output_dict=True, zero_division=0)
        return {
            "precision": seqeval_metrics.precision_score(true_sequences, predicted_sequences),
            "recall": seqeval_metrics.recall_score(true_sequences, predicted_sequences),
            "f1": seqeval_metrics.f1_score(true_sequences, predicted_sequences),
            "accuracy": seqeval_metrics.accuracy_score(true_sequences, predicted_sequences),
            "per_type": {
                name: {"precision": row["precision"], "recall": row["recall"],
                       "f1": row["f1-score"], "support": int(row["support"])}
                for name, row in report.items() if not name.endswith(" avg")
            },
        }


def _random_sequences(rng, count, prefixes, types=("PER", "LOC", "ORG", "MISC")):
    """Random tags, so every malformed transition (I after O, I-X after B-Y, ...) occurs."""
    tags = ["O", "O", "O"] + [f"{p}-{t}" for p in prefixes for t in types]
    sentences = []
    for _ in range(count):
        length = int(rng.integers(0, 25))
        sentences.append([tags[i] for i in rng.integers(0, len(tags), size=length)])
    return sentences


def _perturb(rng, sentences, prefixes, types=("PER", "LOC", "ORG", "MISC")):
    """Predictions that agree with the truth on most tokens."""
    tags = ["O"] + [f"{p}-{t}" for p in prefixes for t in types]
    return [[tag if rng.random() < 0.7 else tags[rng.integers(len(tags))] for tag in sentence]
            for sentence in sentences]


def _assert_scores_equal(actual, expected):
    for key in ("precision", "recall", "f1", "accuracy"):
        assert actual[key] == pytest.approx(expected[key], abs=1e-12), key
    assert actual["per_type"].keys() == expected["per_type"].keys()
    for name, row in expected["per_type"].items():
        assert actual["per_type"][name] == pytest.approx(row, abs=1e-12), name


def test_docstring_examples_run():
    assert doctest.testmod(sequence_labeling_module).failed == 0


@pytest.mark.parametrize(
    "prefixes", [("B", "I"), ("I",), ("B", "I", "E", "S")], ids=["iob2", "iob1", "iobes"])
def test_entities_match_seqeval_on_random_sequences(prefixes):
    rng = np.random.default_rng(len(prefixes))
    for tags in _random_sequences(rng, 500, prefixes):
        ours = extract_entities(tags)
        assert [(t, start, end - 1) for t, start, end in ours] == get_entities(tags), tags
        for _, start, end in ours:
            assert all(tag != "O" for tag in tags[start:end])


@pytest.mark.parametrize(
    "prefixes", [("B", "I"), ("I",), ("B", "I", "E", "S")], ids=["iob2", "iob1", "iobes"])
def test_scores_match_seqeval_on_random_corpora(prefixes):
    rng = np.random.default_rng(10 + len(prefixes))
    for _ in range(20):
        truth = _random_sequences(rng, 30, prefixes)
        predicted = _perturb(rng, truth, prefixes)
        if not any(truth):
            continue
        _assert_scores_equal(entity_scores(truth, predicted), _seqeval_scores(truth, predicted))


def test_crafted_entities():
    # IOB2, IOB1 and their lenient readings.
    assert extract_entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]
    assert extract_entities(["I-PER", "I-PER", "B-PER", "I-PER"]) == [
        ("PER", 0, 2), ("PER", 2, 4)]  # IOB1: B- splits two adjacent same-type entities.
    assert extract_entities(["O", "I-LOC", "I-ORG"]) == [("LOC", 1, 2), ("ORG", 2, 3)]
    assert extract_entities(["B-PER", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 2)]
    assert extract_entities(["B-MISC", "I-MISC", "I-MISC"]) == [("MISC", 0, 3)]
    # IOBES and untyped tags.
    assert extract_entities(["S-PER", "B-LOC", "E-LOC", "E-LOC"]) == [
        ("PER", 0, 1), ("LOC", 1, 3), ("LOC", 3, 4)]
    assert extract_entities(["B", "I", "O", "I"]) == [("_", 0, 2), ("_", 3, 4)]
    # Hyphens inside the type survive.
    assert extract_entities(["B-DATE-TIME", "I-DATE-TIME"]) == [("DATE-TIME", 0, 2)]
    assert extract_entities([]) == [] and extract_entities(["O", "O"]) == []


def test_crafted_scores_match_a_hand_computed_conlleval_table():
    truth = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"], ["B-ORG", "O", "B-PER"]]
    predicted = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O", "B-LOC"]]
    # True: PER(0-2), LOC(3-5), ORG, PER.  Predicted: PER(0-2), LOC(3-4), ORG, LOC.
    # Found: PER(0-2) and ORG -> precision 2/4, recall 2/4; tokens right: 6 of 8.
    scores = entity_scores(truth, predicted)
    assert scores["precision"] == 0.5 and scores["recall"] == 0.5 and scores["f1"] == 0.5
    assert scores["accuracy"] == 0.75
    assert scores["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "ORG": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "PER": {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2},
    }
    _assert_scores_equal(scores, _seqeval_scores(truth, predicted))


def test_types_only_predicted_have_zero_support_and_nothing_predicted_scores_zero():
    scores = entity_scores([["O", "B-PER"]], [["B-LOC", "B-PER"]])
    assert scores["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                         "support": 0}
    assert scores["precision"] == 0.5 and scores["recall"] == 1.0
    empty = entity_scores([["B-PER", "O"]], [["O", "O"]])
    assert empty["precision"] == empty["recall"] == empty["f1"] == 0.0
    assert empty["accuracy"] == 0.5
    no_entities = entity_scores([["O"]], [["O"]])
    assert no_entities["f1"] == 0.0 and no_entities["accuracy"] == 1.0
    assert no_entities["per_type"] == {}


def test_entities_do_not_cross_sentences():
    truth = [["O", "B-PER"], ["I-PER", "O"]]
    scores = entity_scores(truth, truth)
    assert scores["per_type"]["PER"]["support"] == 2 and scores["f1"] == 1.0
    _assert_scores_equal(scores, _seqeval_scores(truth, truth))


def _read_conll_ner(path):
    sentences, sentence = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if sentence:
                sentences.append(sentence)
            sentence = []
        else:
            sentence.append(line.split()[-1])
    if sentence:
        sentences.append(sentence)
    return sentences


def _iob1_to_iob2(tags):
    converted = []
    for i, tag in enumerate(tags):
        previous = tags[i - 1] if i else "O"
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        converted.append(tag)
    return converted


def test_real_conll2003_iob1_and_iob2_read_the_same_entities(shared_data):
    truth = _read_conll_ner(shared_data / "conll2003" / "eng.testa")  # CoNLL-2003 is IOB1.
    assert len(truth) == 3250
    iob2 = [_iob1_to_iob2(sentence) for sentence in truth]
    scores = entity_scores(truth, iob2)
    assert scores["f1"] == 1.0 and scores["accuracy"] < 1.0
    # The dev set's entity counts, as published for CoNLL-2003.
    assert {name: row["support"] for name, row in scores["per_type"].items()} == {
        "LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842}
    # A tagger that forgets every MISC entity and 5% of the other tags, against seqeval.
    rng = np.random.default_rng(0)
    predicted = [[("O" if t.endswith("MISC") or rng.random() < 0.05 else t) for t in sentence]
                 for sentence in iob2]
    _assert_scores_equal(entity_scores(truth, predicted), _seqeval_scores(truth, predicted))


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match=r"Sentence 1 has 2 true tags but 1 predicted"):
        entity_scores([["O"], ["B-PER", "O"]], [["O"], ["B-PER"]])
    with pytest.raises(ValueError, match="2 true sentences but 1 predicted"):
        entity_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="looks like one sentence"):
        entity_scores(["B-PER", "O"], ["B-PER", "O"])
    with pytest.raises(ValueError, match=r"'PER' at position 1 of sentence 0 is not an entity"):
        entity_scores([["O", "PER"]], [["O", "O"]])
    with pytest.raises(ValueError, match=r"'b-loc' at position 0 is not.*'B-PER'"):
        extract_entities(["b-loc"])
    with pytest.raises(ValueError, match="pass a sequence of tags"):
        extract_entities("B-PER")
    with pytest.raises(ValueError, match="no tokens"):
        entity_scores([[]], [[]])
