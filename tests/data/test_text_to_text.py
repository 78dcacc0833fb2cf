import json

import pytest

from keras_llm.data import read_text_pairs, sst2_as_text_to_text


def test_tsv_and_jsonl(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("input\ttarget\ntranslate: hello\tbonjour\n")
    assert read_text_pairs(tsv) == (["translate: hello"], ["bonjour"])
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(json.dumps({"input": "a", "target": "b"}) + "\n\n")
    assert read_text_pairs(jsonl) == (["a"], ["b"])


def test_errors_name_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_text_pairs(tmp_path / "missing.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("source\ttarget\n")
    with pytest.raises(ValueError, match="bad.tsv:1: expected the header"):
        read_text_pairs(bad)
    bad.write_text("input\ttarget\nx\ty\tz\n")
    with pytest.raises(ValueError, match="bad.tsv:2: 3 columns"):
        read_text_pairs(bad)
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"input": "a"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: expected a JSON object"):
        read_text_pairs(jsonl)


def test_sst2_as_text(shared_data):
    inputs, targets = sst2_as_text_to_text(shared_data / "glue" / "SST-2" / "dev.tsv")
    assert len(inputs) == 872 and inputs[0].startswith("sst2 sentence: ")
    assert targets.count("positive") == 444 and targets.count("negative") == 428
