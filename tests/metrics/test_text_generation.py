import pytest

from keras_llm.metrics import bleu, exact_match, rouge_l


def test_exact_match():
    assert exact_match(["a", " b ", "c"], ["a", "b", "d"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="pair up"):
        exact_match(["a"], ["a", "b"])


def test_rouge_l_is_the_lcs_f_measure():
    pytest.importorskip("rouge_score")
    # LCS("the cat sat on the mat", "the cat is on the mat") = 5 tokens of 6 and 6.
    assert rouge_l(["the cat sat on the mat"], ["the cat is on the mat"]) == pytest.approx(5 / 6)
    assert rouge_l(["a b"], ["c d"]) == 0.0


def test_bleu():
    pytest.importorskip("sacrebleu")
    sentence = "the quick brown fox jumps over the lazy dog"
    assert bleu([sentence], [sentence]) == pytest.approx(100.0)
    assert bleu(["completely different words here now"], [sentence]) < 5
