"""SQuAD reading, windowed features with character offsets, and span decoding."""

from __future__ import annotations

import dataclasses
import doctest
import json
import logging

import numpy as np
import pytest
import tensorflow as tf

from keras_llm.data import squad
from keras_llm.data.squad import (
    SquadDataError,
    SquadExample,
    SquadFeatures,
    char_span_to_token_span,
    create_squad_features,
    postprocess_squad,
    read_squad_examples,
    read_squad_file,
    select_articles,
    squad_dataset,
    write_squad_predictions,
)
from keras_llm.metrics import evaluate_squad
from keras_llm.tokenizers import WordPieceTokenizer

VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "what", "won", "the", "cup", "?",
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", ".", ",", "cafe", "muller", "in", "paris",
    "##s", "team", "final", "was", "played",
]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer() -> WordPieceTokenizer:
    return WordPieceTokenizer(VOCAB)


def _squad_json(qas, context="a b c d e f g h i j", title="Letters", version="1.1"):
    return {"version": version,
            "data": [{"title": title, "paragraphs": [{"context": context, "qas": qas}]}]}


def _letters(question="who won ?", answer=("d e", 6), qas_id="q1"):
    context = "a b c d e f g h i j"
    answers = [answer] if answer else []
    return SquadExample(qas_id, question, context, answers)


# --- Reading ------------------------------------------------------------------------------------
def test_reads_the_real_dev_file(shared_data):
    examples = read_squad_examples(shared_data / "squad" / "dev-v1.1.json")
    assert len(examples) == 10570
    assert sum(len(e.answers) for e in examples) == 34726
    assert not any(e.mismatched_answers or e.is_impossible for e in examples)
    first = examples[0]
    assert first.qas_id == "56be4db0acb8001400a502ec" and first.title == "Super_Bowl_50"
    assert first.answer_text == "Denver Broncos"
    start, end = first.answer_span
    assert first.context[start:end] == "Denver Broncos"


def test_missing_file_and_bad_json_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_squad_examples(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [\n  {"title": "x",\n  "paragraphs": [}\n')
    with pytest.raises(SquadDataError, match=r"broken.json, line 3, column 18: not valid JSON"):
        read_squad_file(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"articles": []}')
    with pytest.raises(SquadDataError, match=r"wrong.json: .*'data' list.*\['articles'\]"):
        read_squad_examples(wrong)


@pytest.mark.parametrize(
    "qa, message",
    [
        ({"question": "q", "answers": []}, r"question 0: the question has no 'id' key"),
        ({"id": "x7", "answers": []}, r"question id 'x7': the question has no 'question' key"),
        ({"id": "x7", "question": "q"}, r"question id 'x7': the question has no 'answers' key"),
        ({"id": "x7", "question": "q", "answers": [{"text": "a"}]},
         r"question id 'x7', answer 0: the answer has no 'answer_start' key"),
        ({"id": "x7", "question": "q", "answers": [{"text": "a", "answer_start": "0"}]},
         r"question id 'x7', answer 0: 'answer_start' of the answer must be int, got str"),
        ({"id": "x7", "question": "q", "answers": []},
         r"question id 'x7': the question has no answers.*version_2_with_negative"),
        ({"id": "x7", "question": "q", "answers": [], "is_impossible": True},
         r"question id 'x7': the question is marked is_impossible.*--version_2_with_negative"),
    ],
)
def test_missing_keys_name_the_article_and_question(tmp_path, qa, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_squad_json([qa], title="Some_Title")))
    with pytest.raises(SquadDataError, match=r"bad.json, article 0 \('Some_Title'\), "
                                             r"paragraph 0, " + message):
        read_squad_examples(path)


def test_missing_context_and_paragraphs_are_named():
    data = {"data": [{"title": "T", "paragraphs": [{"qas": []}]}]}
    with pytest.raises(SquadDataError, match=r"article 0 \('T'\), paragraph 0: the paragraph "
                                             "has no 'context' key"):
        read_squad_examples(data)
    with pytest.raises(SquadDataError, match=r"article 0: the article has no 'paragraphs'"):
        read_squad_examples([{"title": ""}])
    with pytest.raises(SquadDataError, match="no questions"):
        read_squad_examples({"data": []})


def test_mismatched_answers_are_reported_not_fatal(caplog, tokenizer):
    qas = [
        {"id": "ok", "question": "who won ?", "answers": [{"text": "d e", "answer_start": 6}]},
        {"id": "bad", "question": "who won ?",
         "answers": [{"text": "d e", "answer_start": 4}, {"text": "e", "answer_start": 8}]},
        {"id": "worse", "question": "who ?", "answers": [{"text": "zz", "answer_start": 2}]},
    ]
    with caplog.at_level(logging.WARNING):
        examples = read_squad_examples(_squad_json(qas))
    assert [e.mismatched_answers for e in examples] == [[], [0], [0]]
    assert examples[1].answer_text == "e" and examples[1].answer_span == (8, 9)
    assert examples[2].answer_span is None and examples[2].answer_text is None
    log = caplog.text
    assert "Could not find answer 0 of question bad" in log and "'d e' vs. 'c d'" in log
    assert "Could not find answer 0 of question worse" in log
    assert "2 of 3 questions have an answer that does not match" in log
    assert "1 have no usable answer" in log

    training = create_squad_features(examples, tokenizer, max_seq_length=24, doc_stride=8,
                                     max_query_length=4, is_training=True)
    assert sorted(set(training.example_index.tolist())) == [0, 1]
    predicting = create_squad_features(examples, tokenizer, max_seq_length=24, doc_stride=8,
                                       max_query_length=4)
    assert sorted(set(predicting.example_index.tolist())) == [0, 1, 2]


def test_version_2_impossible_questions(tokenizer):
    qas = [
        {"id": "no", "question": "who ?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "a", "answer_start": 0}]},
        {"id": "empty", "question": "who ?", "answers": []},
        {"id": "yes", "question": "who ?", "answers": [{"text": "j", "answer_start": 18}],
         "is_impossible": False},
    ]
    examples = read_squad_examples(_squad_json(qas, version="v2.0"), version_2_with_negative=True)
    assert [e.is_impossible for e in examples] == [True, True, False]
    assert [e.answer_text for e in examples] == ["", "", "j"]
    features = create_squad_features(examples, tokenizer, max_seq_length=12, doc_stride=4,
                                     max_query_length=4, is_training=True)
    impossible = np.isin(features.example_index, [0, 1])
    assert impossible.sum() > 2  # several windows each, all pointing at [CLS]
    assert not features.start_positions[impossible].any()
    assert not features.end_positions[impossible].any()
    answered = np.flatnonzero(features.start_positions)
    assert len(answered) == 1 and features.example_index[answered[0]] == 2


def test_select_articles_keeps_only_the_chosen_questions():
    data = {"data": [
        {"title": "A", "paragraphs": [{"context": "x", "qas": [{"id": "1"}, {"id": "2"}]},
                                      {"context": "y", "qas": [{"id": "3"}]}]},
        {"title": "B", "paragraphs": [{"context": "z", "qas": [{"id": "4"}]}]},
    ]}
    selected = select_articles(data["data"], ["2", "4"])
    assert [a["title"] for a in selected] == ["A", "B"]
    assert [[q["id"] for p in a["paragraphs"] for q in p["qas"]] for a in selected] == [["2"],
                                                                                          ["4"]]
    assert len(data["data"][0]["paragraphs"][0]["qas"]) == 2  # the input is untouched


# --- Features -----------------------------------------------------------------------------------
def test_packing_of_one_window(tokenizer):
    example = SquadExample("q", "Who won the cup?", "Cafe Müller won in Paris.",
                           [("Müller", 5)])
    features = create_squad_features([example], tokenizer, max_seq_length=16, doc_stride=4,
                                     max_query_length=8)
    assert len(features) == 1
    tokens = [VOCAB[i] for i in features.token_ids[0]]
    assert tokens == ["[CLS]", "who", "won", "the", "cup", "?", "[SEP]", "cafe", "muller", "won",
                      "in", "paris", ".", "[SEP]", "[PAD]", "[PAD]"]
    assert features.segment_ids[0].tolist() == [0] * 7 + [1] * 7 + [0, 0]
    assert features.padding_mask[0].tolist() == [True] * 14 + [False] * 2
    assert (features.start_positions[0], features.end_positions[0]) == (8, 8)
    assert features.span_text(0, 8, 8, example.context) == "Müller"
    assert features.span_text(0, 7, 12, example.context) == example.context
    assert (features.char_starts[0, :7] == -1).all() and (features.char_starts[0, 13:] == -1).all()
    assert features.max_context[0].tolist() == [False] * 7 + [True] * 6 + [False] * 3
    with pytest.raises(ValueError, match="not all context"):
        features.span_text(0, 6, 8, example.context)


def test_question_is_cut_to_max_query_length(tokenizer):
    example = _letters(question="a b c d e f g h i j")
    features = create_squad_features([example], tokenizer, max_seq_length=20, doc_stride=4,
                                     max_query_length=3)
    assert [VOCAB[i] for i in features.token_ids[0, :5]] == ["[CLS]", "a", "b", "c", "[SEP]"]
    assert (features.segment_ids[:, 5] == 1).all()


def test_windows_with_doc_stride_cover_the_context(tokenizer):
    # Context "a b ... j": 10 tokens; question "who won ?": 3; max_seq_length 11 -> windows
    # of 5 context tokens, 2 apart: starts 0, 2, 4, 6 (the last reaching the end).
    example = _letters(answer=("d e", 6))  # tokens 3..4
    features = create_squad_features([example], tokenizer, max_seq_length=11, doc_stride=2,
                                     max_query_length=4)
    assert features.window_start.tolist() == [0, 2, 4, 6]
    offset = 5  # [CLS] who won ? [SEP]
    windows = [[VOCAB[i] for i in row[offset:offset + 5]] for row in features.token_ids]
    assert windows == [list("abcde"), list("cdefg"), list("efghi"), ["g", "h", "i", "j",
                                                                        "[SEP]"]]
    # The answer (tokens 3-4) fits in windows 0 and 1 only; elsewhere it points at [CLS].
    assert features.start_positions.tolist() == [offset + 3, offset + 1, 0, 0]
    assert features.end_positions.tolist() == [offset + 4, offset + 2, 0, 0]
    for f in (0, 1):
        text = features.span_text(f, features.start_positions[f], features.end_positions[f],
                                  example.context)
        assert text == "d e"
    # Every context token has its maximum context in exactly one window: the one where
    # min(left, right context) + 0.01 * window length is largest, ties to the earlier one.
    best = {}
    for f in range(len(features)):
        for position in np.flatnonzero(features.max_context[f]):
            token = features.window_start[f] + position - offset
            assert token not in best
            best[token] = f
    assert sorted(best) == list(range(10))
    assert [best[t] for t in range(10)] == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]


def test_training_can_skip_windows_without_the_answer(tokenizer):
    examples = [_letters(answer=("d e", 6)), _letters(qas_id="q2", answer=None)]
    examples[1].is_impossible = True
    window = {"max_seq_length": 11, "doc_stride": 2, "max_query_length": 4}
    features = create_squad_features(examples, tokenizer, is_training=True,
                                     skip_windows_without_answer=True, **window)
    # q1 keeps the two windows that hold "d e"; the unanswerable q2 keeps all four.
    assert features.example_index.tolist() == [0, 0, 1, 1, 1, 1]
    assert features.start_positions.tolist() == [8, 6, 0, 0, 0, 0]
    predicting = create_squad_features(examples, tokenizer, skip_windows_without_answer=True,
                                       **window)
    assert len(predicting) == 8  # only training drops windows
    nothing = create_squad_features([_letters(answer=("a b c d e f g", 0))], tokenizer,
                                    is_training=True, skip_windows_without_answer=True, **window)
    assert len(nothing) == 0  # the answer fits no window


def test_answer_split_by_windows_points_at_cls(tokenizer):
    example = _letters(answer=("c d e f g", 4))  # tokens 2..6: 5 tokens
    features = create_squad_features([example], tokenizer, max_seq_length=10, doc_stride=2,
                                     max_query_length=4)  # windows of 4 tokens
    assert not features.start_positions.any() and not features.end_positions.any()
    longer = create_squad_features([example], tokenizer, max_seq_length=11, doc_stride=2,
                                   max_query_length=4)  # windows of 5 tokens
    assert np.count_nonzero(longer.start_positions) == 1


def test_window_and_stride_validation(tokenizer):
    with pytest.raises(ValueError, match="leaves no room for the context"):
        create_squad_features([_letters()], tokenizer, max_seq_length=8, max_query_length=5)
    with pytest.raises(ValueError, match="doc_stride=9 must be between 1 and"):
        create_squad_features([_letters()], tokenizer, max_seq_length=16, doc_stride=9,
                              max_query_length=5)
    empty = create_squad_features([], tokenizer, max_seq_length=16, doc_stride=4,
                                  max_query_length=5)
    assert len(empty) == 0 and empty.token_ids.shape == (0, 16)


def test_char_span_to_token_span():
    starts, ends = np.array([0, 5, 9, 12]), np.array([4, 8, 12, 13])
    assert char_span_to_token_span(starts, ends, 5, 12) == (1, 2)
    assert char_span_to_token_span(starts, ends, 6, 10) == (1, 2)  # inside tokens
    assert char_span_to_token_span(starts, ends, 4, 5) is None  # only a space
    assert char_span_to_token_span(starts, ends, 0, 13) == (0, 3)


def test_answers_keep_original_characters(tokenizer):
    context = "The  CAFÉ\u200b team, in Paris won the cup."
    start = context.index("CAFÉ\u200b team")
    example = SquadExample("q", "who won ?", context, [("CAFÉ\u200b team", start)])
    features = create_squad_features([example], tokenizer, max_seq_length=24, doc_stride=8,
                                     max_query_length=4)
    f = 0
    text = features.span_text(f, features.start_positions[f], features.end_positions[f], context)
    assert text == "CAFÉ\u200b team"


@pytest.mark.slow
def test_real_dev_answers_round_trip(shared_data, minilm_dir, capsys):
    """Every answer of dev-v1.1 as a training target: the tokens it maps to give back its text."""
    tokenizer = WordPieceTokenizer.from_pretrained(minilm_dir)
    examples = read_squad_examples(shared_data / "squad" / "dev-v1.1.json")
    per_answer = [dataclasses.replace(e, qas_id=f"{e.qas_id}/{k}", answer_index=k)
                  for e in examples for k in range(len(e.answers))]
    features = create_squad_features(per_answer, tokenizer, max_seq_length=384, doc_stride=128,
                                     max_query_length=64, is_training=True)
    fits = np.zeros(len(per_answer), bool)
    exact = np.zeros(len(per_answer), bool)
    misses = []
    for f in np.flatnonzero(features.start_positions):
        i = features.example_index[f]
        fits[i] = True
        text = features.span_text(f, features.start_positions[f], features.end_positions[f],
                                  per_answer[i].context)
        if text == per_answer[i].answer_text:
            exact[i] = True
        else:
            misses.append((per_answer[i].answer_text, text))
    rate = exact.sum() / fits.sum()
    with capsys.disabled():
        print(f"\nSQuAD dev round trip: {exact.sum()} of {fits.sum()} answers that fit a window "
              f"({rate:.2%}); {len(per_answer) - fits.sum()} do not fit; e.g. "
              f"{sorted(set(misses))[:5]}")
    assert fits.sum() >= 0.99 * len(per_answer)
    assert rate >= 0.99, misses[:20]
    # The rest are answers that end inside a word piece ("Gan" for "Gandhi"): the span
    # always contains the answer.
    assert all(answer in text for answer, text in misses)

    # With oracle logits, decoding and the official scorer give back the same answers.
    start_logits = np.zeros(features.token_ids.shape, np.float32)
    end_logits = np.zeros(features.token_ids.shape, np.float32)
    rows = np.flatnonzero(features.start_positions)
    start_logits[rows, features.start_positions[rows]] = 10.0
    end_logits[rows, features.end_positions[rows]] = 10.0
    first = [i for i, e in enumerate(per_answer) if e.qas_id.endswith("/0")]
    keep = np.isin(features.example_index, first)
    subset = dataclasses.replace(
        features, **{k.name: getattr(features, k.name)[keep]
                     for k in dataclasses.fields(features)})
    subset.example_index = np.searchsorted(first, subset.example_index)
    decoded = postprocess_squad([per_answer[i] for i in first], subset, start_logits[keep],
                                end_logits[keep], max_answer_length=400)
    predictions = {k.split("/")[0]: v for k, v in decoded.predictions.items()}
    with open(shared_data / "squad" / "dev-v1.1.json", encoding="utf-8") as f:
        articles = json.load(f)["data"]
    scores = evaluate_squad(articles, predictions)
    assert scores["exact_match"] > 99.5 and scores["missing"] == 0


# --- Decoding -----------------------------------------------------------------------------------
def _features_with_logits(tokenizer, examples, **window):
    window = {"max_seq_length": 11, "doc_stride": 2, "max_query_length": 4, **window}
    features = create_squad_features(examples, tokenizer, **window)
    shape = features.token_ids.shape
    return features, np.zeros(shape, np.float32), np.zeros(shape, np.float32)


def test_decoding_picks_the_best_valid_span(tokenizer):
    example = _letters()
    features, start, end = _features_with_logits(tokenizer, [example], max_seq_length=20,
                                                 doc_stride=4)
    assert len(features) == 1
    offset = 5
    start[0, 1] = end[0, 2] = 50.0  # question tokens: never an answer
    start[0, offset + 6] = 9.0
    end[0, offset] = 9.0  # ends before every good start: invalid
    start[0, offset + 1], end[0, offset + 3] = 5.0, 4.5  # "b c d"
    end[0, offset + 8] = 3.0  # "g h i" from start 6: 9 + 3 = 12
    result = postprocess_squad([example], features, start, end, n_best_size=5)
    assert result.predictions == {"q1": "g h i"}
    nbest = result.nbest["q1"]
    assert [c["text"] for c in nbest][:2] == ["g h i", "b c d"]
    assert len(nbest) == len({c["text"] for c in nbest}) <= 5
    assert abs(sum(c["probability"] for c in nbest) - 1) < 1e-6
    assert nbest[0]["start_logit"] == 9.0 and nbest[0]["end_logit"] == 3.0
    assert nbest[0]["probability"] > nbest[1]["probability"]
    assert (nbest[0]["start_char"], nbest[0]["end_char"]) == (12, 17)
    assert not result.null_odds
    # Limited to 2 tokens, "g h i" (3 tokens) and "b c d" are out: the best is start 6
    # with its best end within 2 tokens.
    short = postprocess_squad([example], features, start, end, max_answer_length=2)
    assert short.predictions["q1"] in ("g", "g h")


def test_decoding_over_windows_uses_max_context_and_original_text(tokenizer):
    context = "a b c d E f g h i j"
    example = SquadExample("q", "who won ?", context, [("E", 8)])
    features, start, end = _features_with_logits(tokenizer, [example])
    offset = 5
    # "E" (token 4) is in windows 0 (position 4), 1 (position 2) and 2 (position 0).
    for f, position in [(0, 4), (1, 2), (2, 0)]:
        assert features.window_start[f] + position == 4
    # Window 0 scores "E" highest, but "E" has its maximum context in window 1.
    start[0, offset + 4] = end[0, offset + 4] = 10.0
    start[1, offset + 2] = end[1, offset + 2] = 6.0
    assert features.max_context[1, offset + 2] and not features.max_context[0, offset + 4]
    result = postprocess_squad([example], features, start, end)
    assert result.predictions["q"] == "E"  # the original case, not the token "e"
    assert result.nbest["q"][0]["start_logit"] == 6.0


def test_version_2_null_score_and_threshold(tokenizer):
    examples = [_letters(qas_id="q1"), _letters(qas_id="q2", answer=None)]
    examples[1].is_impossible = True
    features, start, end = _features_with_logits(tokenizer, examples)
    offset = 5
    for f in range(len(features)):
        start[f, 0] = end[f, 0] = 2.0 + f  # null score: lowest over windows = 4.0
        start[f, offset + 1] = end[f, offset + 1] = 3.0  # a one-token span scoring 6.0
    first_q2 = int(np.flatnonzero(features.example_index == 1)[0])
    null_q2 = 2 * (2.0 + first_q2)
    result = postprocess_squad(examples, features, start, end, version_2_with_negative=True)
    assert result.null_odds["q1"] == pytest.approx(4.0 - 6.0)
    assert result.null_odds["q2"] == pytest.approx(null_q2 - 6.0)
    assert result.predictions["q1"] != "" and result.predictions["q2"] == ""
    texts = [c["text"] for c in result.nbest["q1"]]
    assert "" in texts and texts.index("") == 1  # the null answer is ranked with the rest
    strict = postprocess_squad(examples, features, start, end, version_2_with_negative=True,
                               null_score_diff_threshold=-3.0)
    assert strict.predictions["q1"] == ""
    lenient = postprocess_squad(examples, features, start, end, version_2_with_negative=True,
                                null_score_diff_threshold=null_q2 - 6.0)
    assert lenient.predictions["q2"] != ""


def test_decoding_edge_cases(tokenizer):
    examples = [_letters(qas_id="a"), _letters(qas_id="b")]
    features, start, end = _features_with_logits(tokenizer, examples[:1])
    result = postprocess_squad(examples, features, start, end)
    assert result.predictions["b"] == "" and result.nbest["b"][0]["text"] == ""
    with pytest.raises(ValueError, match=r"must both be \[features, max_seq_length\]"):
        postprocess_squad(examples, features, start[:, :5], end)
    with pytest.raises(ValueError, match="n_best_size"):
        postprocess_squad(examples, features, start, end, n_best_size=0)


def test_write_predictions(tmp_path, tokenizer):
    examples = [_letters(qas_id="q1")]
    features, start, end = _features_with_logits(tokenizer, examples)
    v1 = postprocess_squad(examples, features, start, end)
    paths = write_squad_predictions(tmp_path / "v1", v1)
    assert sorted(paths) == ["nbest_predictions", "predictions"]
    assert json.loads((tmp_path / "v1" / "predictions.json").read_text()) == v1.predictions
    nbest = json.loads((tmp_path / "v1" / "nbest_predictions.json").read_text())
    assert set(nbest["q1"][0]) == {"text", "probability", "start_logit", "end_logit",
                                   "start_char", "end_char"}
    v2 = postprocess_squad(examples, features, start, end, version_2_with_negative=True)
    write_squad_predictions(tmp_path / "v2", v2)
    assert json.loads((tmp_path / "v2" / "null_odds.json").read_text()) == v2.null_odds


def test_squad_dataset(tokenizer):
    examples = [_letters(qas_id=str(i)) for i in range(3)]
    features = create_squad_features(examples, tokenizer, max_seq_length=11, doc_stride=2,
                                     max_query_length=4)
    dataset = squad_dataset(features, batch_size=4)
    inputs, labels = next(iter(dataset))
    assert sorted(inputs) == ["padding_mask", "segment_ids", "token_ids"]
    assert inputs["token_ids"].shape == (4, 11) and inputs["padding_mask"].dtype == tf.bool
    assert labels["start_logits"].numpy().tolist() == features.start_positions[:4].tolist()
    assert sum(int(x["token_ids"].shape[0]) for x in squad_dataset(
        features, 5, with_labels=False)) == len(features)

    def order(seed):
        batches = squad_dataset(features, 4, shuffle=True, seed=seed, drop_remainder=True)
        return [b[1]["start_logits"].numpy().tolist() for b in batches]

    assert order(1) == order(1)
    with pytest.raises(ValueError, match="batch_size"):
        squad_dataset(features, 0)
    assert isinstance(SquadFeatures.empty(4), SquadFeatures)


def test_docstring_examples():
    result = doctest.testmod(squad, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
