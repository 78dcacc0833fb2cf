"""GLUE readers on the real files, crafted bad files, tf.data, submissions and the TFDS path."""

from __future__ import annotations

import doctest
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from keras_llm.data import glue
from keras_llm.data.glue import (
    GLUE_TASKS,
    GlueDataError,
    GlueExamples,
    available_test_splits,
    evaluate_predictions,
    get_task,
    load_tfds,
    make_dataset,
    predictions_from_outputs,
    read_glue_file,
    read_glue_split,
    write_submission,
)
from keras_llm.tokenizers import BertPreprocessor, WordPieceTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "good", "bad", "film", "it", "is", "not"]


def write(path, text: str, bom: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


_PREPROCESSOR = []


def preprocessor() -> BertPreprocessor:
    """One preprocessor for the module (building its lookup tables costs seconds)."""
    if not _PREPROCESSOR:
        _PREPROCESSOR.append(BertPreprocessor(WordPieceTokenizer(VOCAB), sequence_length=8))
    return _PREPROCESSOR[0]


# --- Task specs ---------------------------------------------------------------------------------
def test_nine_tasks_with_their_metrics_and_leaderboard_files():
    assert set(GLUE_TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte",
                               "wnli"}
    metrics = {name: task.metrics for name, task in GLUE_TASKS.items()}
    assert metrics["cola"] == ("matthews_corrcoef",)
    assert metrics["mrpc"] == metrics["qqp"] == ("f1", "accuracy")
    assert metrics["stsb"] == ("pearson", "spearman")
    assert all(metrics[t] == ("accuracy",) for t in ("sst2", "mnli", "qnli", "rte", "wnli"))
    files = [f for task in GLUE_TASKS.values() for f in task.submission_files]
    assert sorted(files) == sorted(["CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "QQP.tsv", "STS-B.tsv",
                                    "MNLI-m.tsv", "MNLI-mm.tsv", "QNLI.tsv", "RTE.tsv",
                                    "WNLI.tsv"])
    stsb = get_task("STS-B")
    assert stsb.is_regression and stsb.num_classes == 1 and stsb.is_pair
    assert not get_task("sst-2").is_pair and get_task("glue/mnli").num_classes == 3
    assert get_task("mnli").tfds_split("dev_mismatched") == "validation_mismatched"


def test_unknown_task_and_split_are_named():
    with pytest.raises(ValueError, match="Unknown GLUE task 'sst5'.*cola, sst2"):
        get_task("sst5")
    with pytest.raises(ValueError, match="dev_matched"):
        get_task("mnli").file_name("dev")


def test_docstring_examples_run():
    result = doctest.testmod(glue, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --- The real files -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "task, split, count, label_counts",
    [
        ("sst2", "train", 67349, [29780, 37569]),
        ("sst2", "dev", 872, [428, 444]),
        ("mrpc", "train", 3668, [1194, 2474]),
        ("mrpc", "dev", 408, [129, 279]),
        ("cola", "train", 8551, [2528, 6023]),
        ("cola", "dev", 1043, [322, 721]),
        ("rte", "train", 2490, [1249, 1241]),  # id 0 is entailment
        ("rte", "dev", 277, [146, 131]),
    ],
)
def test_real_glue_files(shared_data, task, split, count, label_counts):
    examples = read_glue_split(shared_data / "glue", task, split)
    assert len(examples) == count and examples.labels.dtype == np.int32
    assert np.bincount(examples.labels).tolist() == label_counts
    assert (examples.text_b is not None) == get_task(task).is_pair
    assert examples.index is None and all(isinstance(t, str) for t in examples.text_a[:50])


def test_real_mrpc_bom_and_columns(shared_data):
    path = shared_data / "glue" / "MRPC" / "dev.tsv"
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"  # The BOM is there, before "Quality".
    dev = read_glue_file(path, "mrpc", "dev")
    assert dev.text_a[0].startswith("He said the foodservice pie business")
    assert dev.text_b[0].startswith('"The foodservice pie business does not fit')  # Quotes kept.
    assert dev.labels[:2].tolist() == [1, 0]


def test_real_cola_has_no_header(shared_data):
    dev = read_glue_split(shared_data / "glue" / "CoLA", "cola", "dev")  # A task folder works too.
    assert dev.text_a[0] == "The sailors rode the breeze clear of the rocks."
    assert dev.labels[0] == 1 and dev.text_b is None


def test_real_stsb_scores(shared_data):
    train = read_glue_split(shared_data / "glue", "stsb", "train")
    dev = read_glue_split(shared_data / "glue", "stsb", "dev")
    assert (len(train), len(dev)) == (5749, 1500)
    assert train.labels.dtype == np.float32
    assert 0.0 == train.labels.min() and train.labels.max() == 5.0
    assert dev.text_a[0] == "A man with a hard hat is dancing." and dev.labels[1] == 4.75


def test_no_test_files_in_the_shared_data(shared_data):
    assert available_test_splits(shared_data / "glue", "sst2") == []


# --- Crafted bad files --------------------------------------------------------------------------
def test_missing_file_names_the_path_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"SST-2.*train\.tsv.*download_glue_data"):
        read_glue_split(tmp_path, "sst2", "train")


def test_missing_task_folder_names_the_paths_tried_and_the_folders_there(tmp_path):
    write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\nit is good\t1\n")
    write(tmp_path / "CoLA" / "train.tsv", "a\t1\t\tit is good\n")
    with pytest.raises(FileNotFoundError) as error:
        read_glue_split(tmp_path, "mnli", "train")
    message = str(error.value)
    assert f"looked for {tmp_path / 'MNLI' / 'train.tsv'} and {tmp_path / 'train.tsv'}" in message
    assert "holds the GLUE folders CoLA, SST-2, not MNLI" in message
    with pytest.raises(FileNotFoundError, match=r"looked for .*SST-2/dev\.tsv\. Expected"):
        read_glue_split(tmp_path, "sst2", "dev")  # The task folder exists: only it is tried.
    with pytest.raises(FileNotFoundError, match=r"the data folder .*nowhere does not exist"):
        read_glue_split(tmp_path / "nowhere", "sst2", "train")


def test_wrong_columns_name_the_file_and_line(tmp_path):
    path = write(tmp_path / "SST-2" / "dev.tsv", "text\tlabel\nit is good\t1\n")
    with pytest.raises(GlueDataError, match=rf"{path}:1: .*lacks \['sentence'\]"):
        read_glue_split(tmp_path, "sst2", "dev")
    path = write(tmp_path / "RTE" / "train.tsv", "index\tsentence1\tlabel\n0\ta\tentailment\n")
    with pytest.raises(GlueDataError, match=rf"{path}:1: .*sentence2"):
        read_glue_split(tmp_path, "rte", "train")


def test_bad_label_names_the_file_line_and_label_set(tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\ngood\t1\nbad\tpositive\n")
    with pytest.raises(GlueDataError, match=rf"{path}:3: label 'positive'.*\['0', '1'\]"):
        read_glue_file(path, "sst2", "dev")
    path = write(tmp_path / "rte.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tneutral\n")
    with pytest.raises(GlueDataError, match=rf"{path}:2: label 'neutral'.*not_entailment"):
        read_glue_file(path, "rte", "dev")


def test_short_row_and_empty_line(tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\ngood\t1\nbad\t0\nno label here\n")
    with pytest.raises(GlueDataError, match=rf"{path}:4: 1 tab-separated columns where 2"):
        read_glue_file(path, "sst2", "dev")
    path = write(tmp_path / "gap.tsv", "sentence\tlabel\ngood\t1\n\nbad\t0\n")
    with pytest.raises(GlueDataError, match=rf"{path}:3: an empty line"):
        read_glue_file(path, "sst2", "dev")
    # Trailing blank lines are not rows.
    path = write(tmp_path / "tail.tsv", "sentence\tlabel\ngood\t1\n\n\n")
    assert len(read_glue_file(path, "sst2", "dev")) == 1


def test_cola_file_with_a_header_or_bad_width(tmp_path):
    path = write(tmp_path / "train.tsv", "index\tsentence\n0\ta\n")
    with pytest.raises(GlueDataError, match=rf"{path}:1: 2 columns; .*no header and 4"):
        read_glue_file(path, "cola", "train")
    path = write(tmp_path / "dev.tsv", "gj04\t1\t\tok.\ngj04\t0\t*\tbad\textra\n")
    with pytest.raises(GlueDataError, match=rf"{path}:2: 5 tab-separated columns where 4"):
        read_glue_file(path, "cola", "dev")


def test_stsb_score_must_be_a_number_in_range(tmp_path):
    header = ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\t"
              "sentence2\tscore\n")
    row = "0\tmain-news\tx\t2012\t1\tnone\tnone\ta\tb\t{}\n"
    for score in ("7.5", "high", "nan"):
        path = write(tmp_path / f"{score}.tsv", header + row.format("1.0") + row.format(score))
        with pytest.raises(GlueDataError, match=rf"{path}:3: score '{score}' is not a number"):
            read_glue_file(path, "stsb", "dev")


def test_not_utf8_and_empty_files(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes("sentence\tlabel\ncaf\u00e9\t1\n".encode("latin-1"))
    with pytest.raises(GlueDataError, match=rf"{path}:2: not valid UTF-8"):
        read_glue_file(path, "sst2", "dev")
    with pytest.raises(GlueDataError, match="is empty"):
        read_glue_file(write(tmp_path / "empty.tsv", ""), "sst2", "dev")
    with pytest.raises(GlueDataError, match="holds no examples"):
        read_glue_file(write(tmp_path / "header.tsv", "sentence\tlabel\n"), "sst2", "dev")


def test_crlf_line_endings_and_bom_anywhere_a_header_is(tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\r\ngood\t1\r\nbad\t0\r\n", bom=True)
    examples = read_glue_file(path, "sst2", "dev")
    assert examples.text_a == ["good", "bad"] and examples.labels.tolist() == [1, 0]


# --- Test splits and submissions ----------------------------------------------------------------
def test_test_split_reads_index_and_writes_a_submission(tmp_path):
    write(tmp_path / "SST-2" / "test.tsv", "index\tsentence\n0\ta good film\n1\tit is bad\n")
    assert available_test_splits(tmp_path, "sst2") == ["test"]
    test = read_glue_split(tmp_path, "sst2", "test")
    assert test.labels is None and test.index == ["0", "1"]
    path = write_submission(tmp_path / "predictions", test, np.array([1, 0]))
    assert path.name == "SST-2.tsv"
    assert path.read_text() == "index\tprediction\n0\t1\n1\t0\n"


def test_mnli_submissions_use_label_names_and_leaderboard_files(tmp_path):
    header = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
              "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\n")
    for split in ("test_matched", "test_mismatched"):
        write(tmp_path / "MNLI" / f"{split}.tsv",
              header + "".join(f"{i}\t1\t1n\tfiction\t-\t-\t-\t-\ta good film\tit is\n"
                               for i in range(3)))
    assert available_test_splits(tmp_path, "mnli") == ["test_matched", "test_mismatched"]
    names = []
    for split in ("test_matched", "test_mismatched"):
        test = read_glue_split(tmp_path, "mnli", split)
        assert test.text_b == ["it is"] * 3
        path = write_submission(tmp_path / "out", test, np.array([0, 1, 2]))
        names.append(path.name)
        assert path.read_text().splitlines() == [
            "index\tprediction", "0\tentailment", "1\tneutral", "2\tcontradiction"]
    assert names == ["MNLI-m.tsv", "MNLI-mm.tsv"]


def test_stsb_and_qqp_submissions(tmp_path):
    write(tmp_path / "STS-B" / "test.tsv",
          "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\n"
          "0\tmain-news\tx\t2012\t1\tnone\tnone\ta\tb\n1\tmain-news\tx\t2012\t2\tnone\tnone\tc\td\n")
    test = read_glue_split(tmp_path, "stsb", "test")
    path = write_submission(tmp_path / "out", test, np.array([5.2371, 1.23456], "float32"))
    assert path.name == "STS-B.tsv"
    assert path.read_text() == "index\tprediction\n0\t5.000\n1\t1.235\n"  # Clipped to 0..5.
    write(tmp_path / "QQP" / "test.tsv", "id\tquestion1\tquestion2\n7\tis it\ta film\n")
    qqp = read_glue_split(tmp_path, "qqp", "test")
    assert qqp.index == ["7"]
    assert write_submission(tmp_path / "out", qqp, [1]).read_text() == "index\tprediction\n7\t1\n"


def test_test_file_without_index_and_labelled_split_without_ids(tmp_path):
    path = write(tmp_path / "test.tsv", "sentence\na film\n")
    with pytest.raises(GlueDataError, match=rf"{path}:1: .*lacks \['index'\]"):
        read_glue_file(path, "sst2", "test")
    dev = read_glue_file(write(tmp_path / "dev.tsv", "sentence\tlabel\na\t1\n"), "sst2", "dev")
    with pytest.raises(ValueError, match="submissions are written for test splits"):
        write_submission(tmp_path, dev, [1])


# --- tf.data ------------------------------------------------------------------------------------
def test_dataset_tokenizes_single_sentences_in_graph():
    examples = GlueExamples(get_task("sst2"), "dev", ["a good film", "bad", "not good"], None,
                            np.array([1, 0, 0], "int32"))
    batches = list(make_dataset(examples, preprocessor(), batch_size=2))
    assert [len(labels) for _, labels in batches] == [2, 1]
    inputs, labels = batches[0]
    assert inputs["token_ids"].numpy().tolist()[0] == [2, 4, 5, 7, 3, 0, 0, 0]
    assert labels.dtype == tf.int32 and labels.numpy().tolist() == [1, 0]
    # The map runs in a graph, so the tokenization is a dataset op, not Python.
    assert isinstance(make_dataset(examples, preprocessor(), 2), tf.data.Dataset)


def test_dataset_packs_pairs_and_float_scores():
    examples = GlueExamples(get_task("stsb"), "dev", ["a film", "it is"], ["good", "bad film"],
                            np.array([4.5, 1.0], "float32"))
    inputs, labels = next(iter(make_dataset(examples, preprocessor(), batch_size=2)))
    assert inputs["token_ids"].numpy().tolist()[1] == [2, 8, 9, 3, 6, 7, 3, 0]
    assert inputs["segment_ids"].numpy().tolist()[1] == [0, 0, 0, 0, 1, 1, 1, 0]
    assert labels.dtype == tf.float32 and labels.numpy().tolist() == [4.5, 1.0]


def test_dataset_shuffle_is_seeded_and_test_splits_batch_inputs_only():
    texts = [f"{'good ' * (i % 5)}film" for i in range(40)]
    examples = GlueExamples(get_task("sst2"), "train", texts, None,
                            np.arange(40, dtype="int32") % 2)

    def order(seed):  # Two epochs of 5 batches (a shuffled dataset repeats forever).
        dataset = make_dataset(examples, preprocessor(), 8, shuffle=True, seed=seed).take(10)
        return [labels.numpy().tolist() + inputs["token_ids"].numpy().ravel().tolist()
                for inputs, labels in dataset]

    first = order(1)
    assert first == order(1) and first != order(2)
    assert first[:5] != first[5:]  # Each epoch in its own order.
    test = GlueExamples(get_task("sst2"), "test", ["a film"], None, None, index=["0"])
    inputs = next(iter(make_dataset(test, preprocessor(), 4, with_labels=False)))
    assert set(inputs) == {"token_ids", "segment_ids", "padding_mask"}
    with pytest.raises(ValueError, match="has no labels.*with_labels=False"):
        make_dataset(test, preprocessor(), 4)


# --- Metrics ------------------------------------------------------------------------------------
def test_predictions_and_official_metrics():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.5, 0.1], [0.0, 3.0]])
    predictions = predictions_from_outputs("mrpc", logits)
    assert predictions.tolist() == [0, 1, 0, 1]
    scores = evaluate_predictions("mrpc", [0, 1, 1, 1], predictions)
    assert scores == pytest.approx({"f1": 0.8, "accuracy": 0.75})
    assert set(evaluate_predictions("cola", [0, 1, 1, 0], predictions)) == {"matthews_corrcoef"}
    regression = predictions_from_outputs("stsb", np.array([[1.0], [2.0], [3.5]]))
    pearson = np.corrcoef([1.0, 2.5, 3.0], [1.0, 2.0, 3.5])[0, 1]
    assert evaluate_predictions("stsb", [1.0, 2.5, 3.0], regression) == pytest.approx(
        {"pearson": pearson, "spearman": 1.0})
    with pytest.raises(ValueError, match=r"shape \[n, 3\]"):
        predictions_from_outputs("mnli", logits)


# --- TensorFlow Datasets ------------------------------------------------------------------------
def test_tfds_missing_says_how_to_install_or_use_local_files(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # `import` now fails.
    with pytest.raises(ImportError, match=r"pip install tensorflow-datasets.*TSV files"):
        load_tfds("glue/sst2", "train")
    with pytest.raises(ValueError, match="glue/sst2"):
        load_tfds("sst2", "train")


def fake_tfds(examples: list[dict], label_names: list[str] | None, calls: list):
    """A stand-in for `tensorflow_datasets` that serves `examples` for any split."""

    def load(name, split, data_dir=None, shuffle_files=False, with_info=False):
        calls.append((name, split, data_dir))
        if name == "glue/offline":
            raise ConnectionError("no network")
        columns = {key: [e[key] for e in examples] for key in examples[0]}
        dataset = tf.data.Dataset.from_tensor_slices(columns)
        label = types.SimpleNamespace(names=label_names) if label_names else object()
        return dataset, types.SimpleNamespace(features={"label": label})

    return types.SimpleNamespace(load=load)


def test_tfds_examples_become_glue_examples(monkeypatch, tmp_path):
    calls = []
    rows = [{"idx": i, "premise": f"p{i}", "hypothesis": f"h{i}", "label": i % 3}
            for i in range(4)]
    monkeypatch.setitem(sys.modules, "tensorflow_datasets",
                        fake_tfds(rows, ["entailment", "neutral", "contradiction"], calls))
    dev = load_tfds("glue/mnli", "dev_mismatched", data_dir="/tmp/tfds")
    assert calls == [("glue/mnli", "validation_mismatched", "/tmp/tfds")]
    assert dev.text_a == ["p0", "p1", "p2", "p3"] and dev.text_b[0] == "h0"
    assert dev.labels.tolist() == [0, 1, 2, 0] and dev.index is None
    unlabelled = [dict(row, label=-1) for row in rows]
    monkeypatch.setitem(sys.modules, "tensorflow_datasets",
                        fake_tfds(unlabelled, ["entailment", "neutral", "contradiction"], calls))
    test = load_tfds("glue/mnli", "test_matched")
    assert test.labels is None and test.index == ["0", "1", "2", "3"]
    assert write_submission(tmp_path, test, [0, 0, 0, 0]).name == "MNLI-m.tsv"


def test_tfds_stsb_scores_and_label_order_check(monkeypatch):
    rows = [{"idx": 0, "sentence1": "a", "sentence2": "b", "label": 3.5}]
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(rows, None, []))
    assert load_tfds("glue/stsb", "train").labels.tolist() == [3.5]
    rows = [{"idx": 0, "sentence": "a", "label": 1}]
    monkeypatch.setitem(sys.modules, "tensorflow_datasets",
                        fake_tfds(rows, ["positive", "negative"], []))
    with pytest.raises(RuntimeError, match="expects \\['negative', 'positive'\\]"):
        load_tfds("glue/sst2", "train")


def test_tfds_load_failure_points_to_local_files(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds([{}], None, []))
    monkeypatch.setitem(GLUE_TASKS, "offline", get_task("sst2"))
    with pytest.raises(RuntimeError, match="could not load glue/offline.*no network.*TSV"):
        load_tfds("glue/offline", "train")
