"""SQuAD EM/F1 on hand-computed cases (official v1.1 and v2.0 rules) and on the real dev set."""

import doctest
import json

import pytest

from keras_llm.metrics import evaluate_squad, normalize_answer, squad_exact_match, squad_f1
from keras_llm.metrics import squad as squad_module


def _article(*questions):
    """One article, one paragraph; each question is `(id, answer texts, is_impossible)`."""
    qas = []
    for qid, texts, impossible in questions:
        qa = {"id": qid, "question": "?", "answers": [{"text": t, "answer_start": 0}
                                                       for t in texts]}
        if impossible is not None:
            qa["is_impossible"] = impossible
        qas.append(qa)
    return {"title": "t", "paragraphs": [{"context": "c", "qas": qas}]}


def test_docstring_examples_run():
    assert doctest.testmod(squad_module).failed == 0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Quick, Brown Fox!", "quick brown fox"),
        ("an apple a day", "apple day"),
        ("theatre and anthem", "theatre and anthem"),  # Articles only as whole words.
        ("(the) end", "end"),
        ("the-end", "theend"),  # Punctuation goes first, so "the" is no longer a word.
        ("Don't  stop\n\tnow ", "dont stop now"),
        ("1990\u20131995", "1990\u20131995"),  # Only ASCII punctuation is removed (en dash kept).
        ("Caf\u00e9 THE \u00c9cole", "caf\u00e9 \u00e9cole"),
        ("the", ""),
        ("", ""),
        ("A.B.C.", "abc"),
    ],
)
def test_normalize_answer_follows_the_official_rules(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_and_f1_on_crafted_answers():
    assert squad_exact_match("The Denver Broncos.", "denver broncos") == 1.0
    assert squad_exact_match("Denver", "Denver Broncos") == 0.0
    # "cat sat on mat" vs "cat on mat": 3 common, precision 3/4, recall 1 -> 6/7.
    assert squad_f1("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    # Repeats count once per occurrence on both sides: precision 1/3, recall 1 -> 1/2.
    assert squad_f1("paris paris paris", "Paris") == pytest.approx(0.5)
    assert squad_f1("Denver", "Carolina Panthers") == 0.0
    # v2.0 rule for empty answers.
    assert squad_f1("", "") == 1.0
    assert squad_f1("the", "a an") == 1.0
    assert squad_f1("", "Paris") == 0.0
    assert squad_f1("Paris", "") == 0.0
    assert type(squad_f1("a b", "b")) is float and type(squad_exact_match("a", "a")) is float


def test_v1_1_takes_the_best_ground_truth_and_counts_missing_questions():
    articles = [
        _article(("q1", ["Denver Broncos", "the Denver Broncos", "Broncos"], None)),
        _article(("q2", ["Santa Clara, California", "Levi's Stadium"], None),
                 ("q3", ["February 7, 2016"], None)),
    ]
    predictions = {"q1": "Broncos", "q2": "Levi's Stadium in the San Francisco Bay Area",
                   "unknown": "ignored"}
    result = evaluate_squad(articles, predictions)
    # q2: "levis stadium in san francisco bay area" (7 tokens) vs "levis stadium" -> F1 4/9.
    assert result == {
        "exact_match": pytest.approx(100 / 3),
        "f1": pytest.approx(100 * (1 + 4 / 9) / 3),
        "total": 3,
        "missing": 1,
    }
    assert "exact" not in result and "HasAns_total" not in result


def test_v1_1_scores_empty_normalized_answers_as_the_v1_1_script():
    # The v1.1 script has no empty-answer rule: "the" vs "a" is an exact match with F1 0.
    result = evaluate_squad([_article(("q", ["a"], None))], {"q": "the"})
    assert result["exact_match"] == 100.0 and result["f1"] == 0.0


V2_ARTICLES = [
    _article(("h1", ["France"], False), ("h3", ["the Eiffel Tower"], False)),
    _article(("n1", [], True), ("h2", ["Paris", "in Paris"], False), ("n2", [], True)),
]
V2_PREDICTIONS = {"h1": "France", "h3": "Eiffel Tower in Paris", "n1": "", "h2": "",
                  "n2": "London"}
V2_PROBABILITIES = {"h1": 0.1, "h3": 0.2, "n1": 0.3, "h2": 0.6, "n2": 0.9}


def test_v2_0_scores_answerable_and_unanswerable_questions():
    # Exact: h1 1, h3 0, n1 1, h2 0, n2 0.  F1: h3 is "eiffel tower in paris" vs
    # "eiffel tower", 2/3; the empty prediction for h2 scores 0; n1's "" is right.
    result = evaluate_squad(V2_ARTICLES, V2_PREDICTIONS)
    assert result == {
        "exact_match": pytest.approx(40.0),
        "exact": pytest.approx(40.0),
        "f1": pytest.approx(100 * (8 / 3) / 5),
        "total": 5,
        "missing": 0,
        "HasAns_exact": pytest.approx(100 / 3),
        "HasAns_f1": pytest.approx(100 * (5 / 3) / 3),
        "HasAns_total": 3,
        "NoAns_exact": 50.0,
        "NoAns_f1": 50.0,
        "NoAns_total": 2,
    }


def test_v2_0_threshold_and_best_threshold_sweep():
    result = evaluate_squad(V2_ARTICLES, V2_PREDICTIONS, V2_PROBABILITIES,
                            no_answer_threshold=0.5)
    # Above 0.5: h2 (answerable, so 0 either way) and n2 (now a correct no-answer).
    assert result["exact_match"] == result["exact"] == pytest.approx(60.0)
    assert result["f1"] == pytest.approx(100 * (11 / 3) / 5)
    assert result["HasAns_exact"] == pytest.approx(100 / 3)
    assert result["NoAns_exact"] == result["NoAns_f1"] == 100.0
    # Sweep from "all no-answer" (2 right) in order h1 (+1), h3 (+0 exact, +2/3 F1), n1 (+0),
    # h2 (+0), n2 (-1: it answers an unanswerable question).
    assert result["best_exact"] == pytest.approx(60.0) and result["best_exact_thresh"] == 0.1
    assert result["best_f1"] == pytest.approx(100 * (11 / 3) / 5)
    assert result["best_f1_thresh"] == 0.2
    # The default threshold 1.0 changes nothing, but the sweep is still reported.
    default = evaluate_squad(V2_ARTICLES, V2_PREDICTIONS, V2_PROBABILITIES)
    assert default["exact"] == pytest.approx(40.0) and default["best_exact"] == pytest.approx(60.0)
    # Threshold 0.0: every question is predicted unanswerable.
    everything_empty = evaluate_squad(V2_ARTICLES, V2_PREDICTIONS, V2_PROBABILITIES, 0.0)
    assert everything_empty["exact"] == everything_empty["f1"] == pytest.approx(40.0)
    assert everything_empty["HasAns_f1"] == 0.0 and everything_empty["NoAns_f1"] == 100.0


def test_v2_0_sweep_keeps_all_no_answer_when_that_is_best():
    articles = [_article(("n", [], True), ("h", ["Paris"], False))]
    result = evaluate_squad(articles, {"n": "London", "h": "Rome"}, {"n": 0.2, "h": 0.7})
    assert result["best_exact"] == 50.0 and result["best_exact_thresh"] == 0.0


def test_v2_0_gold_answers_that_normalize_to_nothing_mean_no_answer():
    # Like the v2.0 script: such a ground truth is dropped, leaving "" as the only answer;
    # the question still counts as answerable because its answers list is not empty.
    articles = [_article(("q", ["The"], False), ("n", [], True))]
    result = evaluate_squad(articles, {"q": "", "n": ""})
    assert result["exact"] == result["f1"] == 100.0
    assert result["HasAns_total"] == 1 and result["NoAns_total"] == 1


def test_v2_0_format_with_only_answerable_questions_reports_has_ans_only():
    result = evaluate_squad([_article(("q", ["Paris"], False))], {"q": "paris"})
    assert result["exact"] == 100.0 and result["HasAns_total"] == 1
    assert "NoAns_total" not in result


def test_v2_0_missing_predictions_count_as_wrong():
    result = evaluate_squad(V2_ARTICLES, {"h1": "France", "n1": ""})
    assert result["missing"] == 3 and result["total"] == 5
    assert result["exact"] == pytest.approx(40.0)
    assert result["NoAns_exact"] == 50.0  # n2 is missing, not a correct "no answer".


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match=r"mapping.*'data' list"):
        evaluate_squad({"version": "1.1", "data": []}, {})
    with pytest.raises(ValueError, match="Article 0 has no 'paragraphs'"):
        evaluate_squad([{"title": "x"}], {})
    with pytest.raises(ValueError, match="Question 0 of paragraph 0 of article 0 lacks"):
        evaluate_squad([{"paragraphs": [{"qas": [{"question": "?"}]}]}], {})
    with pytest.raises(ValueError, match="no questions"):
        evaluate_squad([], {})
    with pytest.raises(ValueError, match=r"question 'q1' is \['Paris'\], not a string"):
        evaluate_squad([_article(("q1", ["Paris"], None))], {"q1": ["Paris"]})
    with pytest.raises(ValueError, match=r"no entry for 1 predicted question.*'n2'"):
        evaluate_squad(V2_ARTICLES, V2_PREDICTIONS,
                       {k: v for k, v in V2_PROBABILITIES.items() if k != "n2"})
    with pytest.raises(ValueError, match="mapping from question id"):
        evaluate_squad(V2_ARTICLES, list(V2_PREDICTIONS))


def test_real_squad_dev_set(shared_data):
    with open(shared_data / "squad" / "dev-v1.1.json", encoding="utf-8") as f:
        articles = json.load(f)["data"]
    questions = [qa for article in articles for paragraph in article["paragraphs"]
                 for qa in paragraph["qas"]]
    first_answers = {qa["id"]: qa["answers"][0]["text"] for qa in questions}
    assert evaluate_squad(articles, first_answers) == {
        "exact_match": 100.0, "f1": 100.0, "total": 10570, "missing": 0}
    # Any ground truth is an exact match, but one question's last ground truth is ".", which
    # normalizes to nothing: the v1.1 script gives it EM 1 and F1 0.
    last_answers = {qa["id"]: qa["answers"][-1]["text"] for qa in questions}
    assert last_answers["57340d124776f419006617bf"] == "."
    assert evaluate_squad(articles, last_answers) == {
        "exact_match": 100.0, "f1": pytest.approx(100 * 10569 / 10570), "total": 10570,
        "missing": 0}
    # The first word of the first answer: EM only where the answer is one word.
    first_words = {qa["id"]: qa["answers"][0]["text"].split()[0] for qa in questions}
    result = evaluate_squad(articles, first_words)
    expected_exact = 100 * sum(
        max(squad_exact_match(first_words[qa["id"]], a["text"]) for a in qa["answers"])
        for qa in questions) / len(questions)
    assert result["exact_match"] == pytest.approx(expected_exact)
    assert 0 < result["exact_match"] < result["f1"] < 100
    assert evaluate_squad(articles, {})["missing"] == 10570
