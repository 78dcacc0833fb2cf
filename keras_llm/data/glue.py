"""GLUE: the nine tasks' file layouts, labels and metrics; TSV readers, `tf.data` and TFDS.

The readers take the folders that `download_glue_data.py` writes (`CoLA/`, `SST-2/`, `MRPC/`,
`QQP/`, `STS-B/`, `MNLI/`, `QNLI/`, `RTE/`, `WNLI/`, each with `train.tsv`, `dev.tsv` and
`test.tsv`; MNLI with `dev_matched.tsv`, `dev_mismatched.tsv`, `test_matched.tsv` and
`test_mismatched.tsv`). The layouts differ from task to task, and each quirk is handled here:
CoLA's labelled files have no header and four columns, MRPC's start with a UTF-8 byte-order
mark, STS-B has ten columns and a float `score`, QQP's test file names its index `id`, test
files carry no labels. Columns are found by their header names, so the readers do not depend
on column positions. A missing file, a header without the expected columns, a row of the
wrong width or a label outside the task's label set raises an error naming the file and line.

Label ids follow TensorFlow Datasets' `glue/*` order (so TFDS and TSV data give the same ids);
`GlueTask.labels` holds the values as written in the TSV files (and in GLUE submissions),
`GlueTask.label_names` readable names.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from keras_llm.data.pipeline import shuffle_epochs
from keras_llm.metrics.classification import classification_metrics


class GlueDataError(ValueError):
    """A GLUE file's layout or content is not what its task expects (file and line named)."""


@dataclasses.dataclass(frozen=True)
class GlueTask:
    """How one GLUE task is stored, labelled and scored.

    Args:
        name: the short name (`"sst2"`, as in TFDS's `glue/sst2`).
        folder: the task's folder in the GLUE data (`"SST-2"`), also its leaderboard name.
        text_columns: header names of the one or two text columns (the same in test files).
        label_column: header name of the label column.
        labels: the label values as written in the files, in id order; `None` for
            regression (STS-B).
        label_names: readable names in id order (TFDS's `ClassLabel` names).
        metrics: the official metrics, names as `classification_metrics` takes them.
        eval_splits: labelled evaluation splits (`dev.tsv` -> `"dev"`).
        test_splits: unlabelled test splits (`test.tsv` -> `"test"`).
        submission_files: the GLUE leaderboard file name for each test split.
        index_column: the test files' example-id column.
        headerless_columns: column names of labelled files that have no header row (CoLA).
        tfds_features: TFDS's feature names for the text columns.
        label_range: the allowed range of a regression label.

    Example:
    >>> from keras_llm.data.glue import get_task
    >>> task = get_task("MNLI")
    >>> task.labels
    ('entailment', 'neutral', 'contradiction')
    >>> task.eval_splits, task.submission_file("test_mismatched")
    (('dev_matched', 'dev_mismatched'), 'MNLI-mm.tsv')
    """

    name: str
    folder: str
    text_columns: tuple[str, ...]
    label_column: str
    labels: tuple[str, ...] | None
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    tfds_features: tuple[str, ...]
    eval_splits: tuple[str, ...] = ("dev",)
    test_splits: tuple[str, ...] = ("test",)
    submission_files: tuple[str, ...] = ()
    index_column: str = "index"
    headerless_columns: tuple[str, ...] | None = None
    label_range: tuple[float, float] | None = None

    @property
    def is_pair(self) -> bool:
        """Whether examples are sentence pairs (`(text_a, text_b)`)."""
        return len(self.text_columns) == 2

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_classes(self) -> int:
        """Output units of the classifier head: the number of labels, 1 for regression."""
        return 1 if self.labels is None else len(self.labels)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.eval_splits, *self.test_splits)

    def file_name(self, split: str) -> str:
        """The TSV file of `split` inside the task folder (`"dev_matched"` -> `dev_matched.tsv`)."""
        self._check_split(split)
        return f"{split}.tsv"

    def tfds_split(self, split: str) -> str:
        """TFDS's name of `split` (`"dev"` -> `"validation"`)."""
        self._check_split(split)
        return split.replace("dev", "validation")

    def submission_file(self, split: str) -> str:
        """The leaderboard's file name for a test split (`"test_matched"` -> `MNLI-m.tsv`)."""
        if split not in self.test_splits:
            raise ValueError(
                f"{self.name} writes submissions for its test splits {self.test_splits}, "
                f"not {split!r}."
            )
        return self.submission_files[self.test_splits.index(split)]

    def is_labelled(self, split: str) -> bool:
        self._check_split(split)
        return split not in self.test_splits

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(f"GLUE {self.name} has the splits {self.splits}; got {split!r}.")


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask("cola", "CoLA", ("sentence",), "label", _BINARY,
                 ("unacceptable", "acceptable"), ("matthews_corrcoef",), ("sentence",),
                 submission_files=("CoLA.tsv",),
                 headerless_columns=("source", "label", "original_label", "sentence")),
        GlueTask("sst2", "SST-2", ("sentence",), "label", _BINARY, ("negative", "positive"),
                 ("accuracy",), ("sentence",), submission_files=("SST-2.tsv",)),
        GlueTask("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", _BINARY,
                 ("not_equivalent", "equivalent"), ("f1", "accuracy"),
                 ("sentence1", "sentence2"), submission_files=("MRPC.tsv",)),
        GlueTask("qqp", "QQP", ("question1", "question2"), "is_duplicate", _BINARY,
                 ("not_duplicate", "duplicate"), ("f1", "accuracy"),
                 ("question1", "question2"), submission_files=("QQP.tsv",), index_column="id"),
        GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), "score", None, None,
                 ("pearson", "spearman"), ("sentence1", "sentence2"),
                 submission_files=("STS-B.tsv",), label_range=(0.0, 5.0)),
        GlueTask("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label",
                 ("entailment", "neutral", "contradiction"),
                 ("entailment", "neutral", "contradiction"), ("accuracy",),
                 ("premise", "hypothesis"), eval_splits=("dev_matched", "dev_mismatched"),
                 test_splits=("test_matched", "test_mismatched"),
                 submission_files=("MNLI-m.tsv", "MNLI-mm.tsv")),
        GlueTask("qnli", "QNLI", ("question", "sentence"), "label", _NLI2, _NLI2,
                 ("accuracy",), ("question", "sentence"), submission_files=("QNLI.tsv",)),
        GlueTask("rte", "RTE", ("sentence1", "sentence2"), "label", _NLI2, _NLI2,
                 ("accuracy",), ("sentence1", "sentence2"), submission_files=("RTE.tsv",)),
        GlueTask("wnli", "WNLI", ("sentence1", "sentence2"), "label", _BINARY,
                 ("not_entailment", "entailment"), ("accuracy",), ("sentence1", "sentence2"),
                 submission_files=("WNLI.tsv",)),
    )
}
GLUE_TASK_NAMES: tuple[str, ...] = tuple(GLUE_TASKS)


def get_task(name: str) -> GlueTask:
    """The task called `name`: `"sst2"`, `"SST-2"`, `"sts-b"` and `"glue/mnli"` all work."""
    key = str(name).strip().lower().removeprefix("glue/").split(":")[0]
    key = key.replace("-", "").replace("_", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"Unknown GLUE task {name!r}; the tasks are {', '.join(GLUE_TASKS)}.")
    return GLUE_TASKS[key]


@dataclasses.dataclass
class GlueExamples:
    """One split of one task: texts, labels (ids, or floats for STS-B) and example ids.

    Args:
        task: the `GlueTask`.
        split: `"train"`, `"dev"`, `"test"`, `"dev_matched"`, ...
        text_a: the first (or only) text of each example.
        text_b: the second texts of a pair task; `None` for single-sentence tasks.
        labels: int32 label ids, float32 scores (STS-B), or `None` for test splits.
        index: the example ids of a test split (its `index` column), for submissions.
        source: the file (or TFDS name) read, for messages.

    Example:
    >>> import numpy as np
    >>> from keras_llm.data.glue import GlueExamples, get_task
    >>> examples = GlueExamples(get_task("sst2"), "dev", ["good", "bad"], None,
    ...                         np.array([1, 0], "int32"))
    >>> len(examples), examples.select([1]).text_a
    (2, ['bad'])
    """

    task: GlueTask
    split: str
    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray | None
    index: list[str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.text_a)

    @property
    def features(self) -> tuple[list[str], ...]:
        """`(text_a,)` or `(text_a, text_b)`."""
        return (self.text_a,) if self.text_b is None else (self.text_a, self.text_b)

    def select(self, indices: Sequence[int] | np.ndarray) -> GlueExamples:
        """The examples at `indices`, in that order."""
        indices = [int(i) for i in indices]

        def pick(values):
            if values is None:
                return None
            if isinstance(values, np.ndarray):
                return values[np.asarray(indices, dtype="int64")]
            return [values[i] for i in indices]

        return dataclasses.replace(
            self, text_a=pick(self.text_a), text_b=pick(self.text_b),
            labels=pick(self.labels), index=pick(self.index),
        )


# --- TSV files ----------------------------------------------------------------------------------
def _read_tsv_lines(path: Path) -> list[tuple[int, list[str]]]:
    """`(line number, fields)` of every line; tabs split fields and quotes mean nothing (as in
    GLUE's own readers). A leading BOM is dropped; trailing blank lines are ignored."""
    rows = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise GlueDataError(
                    f"{path}:{number}: not valid UTF-8 (byte {error.start} of the line, "
                    f"{raw[error.start:error.start + 4]!r}); GLUE files are UTF-8, convert it "
                    "with e.g. `iconv -f latin1 -t utf-8`."
                ) from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            line = line.removesuffix("\n").removesuffix("\r")
            rows.append((number, line.split("\t")))
    while rows and rows[-1][1] == [""]:
        rows.pop()
    return rows


def _layout(columns: Sequence[str]) -> str:
    return "\\t".join(columns)


def read_glue_file(path: str | os.PathLike, task: str | GlueTask, split: str) -> GlueExamples:
    """Reads one GLUE TSV file as `split` of `task` (test splits: no labels, an index column).

    Raises:
        FileNotFoundError: `path` does not exist.
        GlueDataError: the header lacks the task's columns, a row has the wrong number of
            columns, a label is not one of the task's labels (or not a number in range for
            STS-B), or the file holds no examples; the message names the file and line.
    """
    task = task if isinstance(task, GlueTask) else get_task(task)
    path = Path(path)
    labelled = task.is_labelled(split)
    if not path.is_file():
        raise FileNotFoundError(
            f"GLUE {task.folder} {split} file not found: {path}. Expected the layout that "
            f"download_glue_data.py writes (<glue_dir>/{task.folder}/{task.file_name(split)}), "
            f"or load the data from TensorFlow Datasets (glue/{task.name})."
        )
    rows = _read_tsv_lines(path)
    text_columns = task.text_columns
    needed = [*text_columns, task.label_column] if labelled else [task.index_column, *text_columns]
    if labelled and task.headerless_columns is not None:
        header, body = list(task.headerless_columns), rows
        if body and len(body[0][1]) != len(header):
            raise GlueDataError(
                f"{path}:{body[0][0]}: {len(body[0][1])} columns; GLUE {task.folder} {split} "
                f"files have no header and {len(header)} tab-separated columns "
                f"({_layout(header)}). Is this the {task.folder} {split} file?"
            )
    else:
        if not rows:
            raise GlueDataError(f"{path} is empty; expected a header with {_layout(needed)}.")
        header, body = rows[0][1], rows[1:]
        missing = [column for column in needed if column not in header]
        if missing or len(set(header)) != len(header):
            problem = f"lacks {missing}" if missing else "repeats a column name"
            raise GlueDataError(
                f"{path}:1: the header ({_layout(header)}) {problem}; GLUE {task.folder} "
                f"{split} files have a header with the columns {_layout(needed)}. "
                f"Is this the {task.folder} {split} file?"
            )
    if not body:
        raise GlueDataError(f"{path} holds no examples.")
    positions = {column: header.index(column) for column in needed}
    width = len(header)
    texts: list[list[str]] = [[] for _ in text_columns]
    labels: list[Any] = []
    index: list[str] = []
    for number, fields in body:
        if len(fields) != width:
            what = "an empty line" if fields == [""] else f"{len(fields)} tab-separated columns"
            raise GlueDataError(
                f"{path}:{number}: {what} where {width} are expected ({_layout(header)}). "
                "Fix or delete that line (a tab inside a text, or a row cut short)."
            )
        for values, column in zip(texts, text_columns, strict=True):
            values.append(fields[positions[column]])
        if labelled:
            labels.append(_parse_label(task, fields[positions[task.label_column]], path, number))
        else:
            index.append(fields[positions[task.index_column]])
    if labelled:
        label_array = np.asarray(labels, "float32" if task.is_regression else "int32")
    return GlueExamples(
        task=task,
        split=split,
        text_a=texts[0],
        text_b=texts[1] if task.is_pair else None,
        labels=label_array if labelled else None,
        index=None if labelled else index,
        source=str(path),
    )


def _parse_label(task: GlueTask, value: str, path: Path, number: int) -> int | float:
    if task.labels is not None:
        if value not in task.labels:
            raise GlueDataError(
                f"{path}:{number}: label {value!r} is not a GLUE {task.folder} label; the "
                f"labels are {list(task.labels)}. Fix the row, or check that this is the "
                f"{task.folder} file."
            )
        return task.labels.index(value)
    low, high = task.label_range or (-math.inf, math.inf)
    try:
        score = float(value)
    except ValueError:
        score = math.nan
    if not (math.isfinite(score) and low <= score <= high):
        raise GlueDataError(
            f"{path}:{number}: {task.label_column} {value!r} is not a number from {low} to "
            f"{high} (GLUE {task.folder} is a regression task). Fix the row."
        )
    return score


def task_folder(data_dir: str | os.PathLike, task: str | GlueTask) -> Path:
    """`data_dir/<task folder>` when it exists (a GLUE root), else `data_dir` (a task folder)."""
    task = task if isinstance(task, GlueTask) else get_task(task)
    data_dir = Path(data_dir)
    nested = data_dir / task.folder
    return nested if nested.is_dir() else data_dir


def read_glue_split(data_dir: str | os.PathLike, task: str | GlueTask, split: str) -> GlueExamples:
    """Reads `split` of `task` from a GLUE root folder (`<data_dir>/SST-2/dev.tsv`) or from the
    task's own folder (`<data_dir>/dev.tsv`).

    Example:
    >>> dev = read_glue_split("glue_data", "mrpc", "dev")  # doctest: +SKIP
    >>> len(dev), dev.text_b[0][:20], dev.labels[:3]  # doctest: +SKIP
    (408, '"The foodservice pie', array([1, 0, 0], dtype=int32))
    """
    task = task if isinstance(task, GlueTask) else get_task(task)
    path = task_folder(data_dir, task) / task.file_name(split)
    if not path.is_file():
        raise FileNotFoundError(_missing_split_message(Path(data_dir), task, split))
    return read_glue_file(path, task, split)


def _missing_split_message(data_dir: Path, task: GlueTask, split: str) -> str:
    """Which paths `read_glue_split` tried for a missing file, and what `data_dir` holds."""
    name = task.file_name(split)
    if not data_dir.is_dir():
        return (f"GLUE {task.folder} {split} file not found: the data folder {data_dir} does not "
                f"exist. Pass the GLUE root (holding {task.folder}/{name}) or the {task.folder} "
                f"folder itself, or load the data from TensorFlow Datasets (glue/{task.name}).")
    nested = data_dir / task.folder
    tried = [nested / name] if nested.is_dir() else [nested / name, data_dir / name]
    known = {t.folder for t in GLUE_TASKS.values()}
    present = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and p.name in known)
    holds = (f" {data_dir} holds the GLUE folders {', '.join(present)}, not {task.folder}."
             if present and task.folder not in present else "")
    return (f"GLUE {task.folder} {split} file not found: looked for "
            f"{' and '.join(str(p) for p in tried)}.{holds} Expected the layout that "
            f"download_glue_data.py writes (<glue_dir>/{task.folder}/{name}), or load the data "
            f"from TensorFlow Datasets (glue/{task.name}).")


def available_test_splits(data_dir: str | os.PathLike, task: str | GlueTask) -> list[str]:
    """The task's test splits whose files exist under `data_dir` (GLUE root or task folder)."""
    task = task if isinstance(task, GlueTask) else get_task(task)
    folder = task_folder(data_dir, task)
    return [split for split in task.test_splits if (folder / task.file_name(split)).is_file()]


# --- TensorFlow Datasets ------------------------------------------------------------------------
def load_tfds(name: str, split: str, data_dir: str | None = None) -> GlueExamples:
    """Reads `split` (`"train"`, `"dev"`, `"dev_matched"`, `"test"`, ...) of a TFDS GLUE
    dataset (`"glue/sst2"`) into the same `GlueExamples` as the TSV readers.

    TFDS downloads and prepares GLUE on first use (into `data_dir`, default
    `~/tensorflow_datasets`); after that it reads the prepared copy.

    Raises:
        ImportError: `tensorflow_datasets` is not installed (how to install it, and the
            TSV alternative, are in the message).
        RuntimeError: TFDS could not download or read the data set.
    """
    if not str(name).lower().startswith("glue/"):
        raise ValueError(
            f"Expected a TFDS GLUE name like 'glue/sst2' or 'glue/mnli'; got {name!r}."
        )
    task = get_task(name)
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError(
            f"Loading {name} needs TensorFlow Datasets, which is not installed: run "
            "`pip install tensorflow-datasets` (it downloads GLUE on first use), or read the "
            "GLUE TSV files instead (the folders download_glue_data.py writes, e.g. "
            f"<glue_dir>/{task.folder}/train.tsv) with read_glue_split / --data_dir."
        ) from None
    tfds_split = task.tfds_split(split)
    try:
        dataset, info = tfds.load(name, split=tfds_split, data_dir=data_dir,
                                  shuffle_files=False, with_info=True)
    except Exception as error:  # network, missing manual files, unknown config...
        raise RuntimeError(
            f"TensorFlow Datasets could not load {name} split {tfds_split!r}: {error}. "
            "TFDS downloads GLUE on first use, so it needs network access once (or a copy "
            "prepared with `tfds build` in its data_dir); otherwise use the GLUE TSV files "
            f"(<glue_dir>/{task.folder}/) with read_glue_split / --data_dir."
        ) from error
    names = getattr(info.features["label"], "names", None) if task.labels is not None else None
    if names is not None and tuple(names) != task.label_names:
        raise RuntimeError(
            f"TFDS {name} has the labels {list(names)}; keras-llm expects "
            f"{list(task.label_names)} in that order. Use the GLUE TSV files instead."
        )
    texts: list[list[str]] = [[] for _ in task.tfds_features]
    labels, index = [], []
    for example in dataset.as_numpy_iterator():
        for values, feature in zip(texts, task.tfds_features, strict=True):
            values.append(example[feature].decode("utf-8"))
        labels.append(example["label"])
        index.append(str(int(example["idx"])))
    labelled = task.is_labelled(split)
    if labelled and not task.is_regression and any(int(label) < 0 for label in labels):
        raise RuntimeError(f"TFDS {name} split {tfds_split!r} has unlabelled (-1) examples.")
    dtype = "float32" if task.is_regression else "int32"
    return GlueExamples(
        task=task,
        split=split,
        text_a=texts[0],
        text_b=texts[1] if task.is_pair else None,
        labels=np.asarray(labels, dtype) if labelled else None,
        index=None if labelled else index,
        source=f"tfds:{name}/{tfds_split}",
    )


# --- tf.data ------------------------------------------------------------------------------------
def make_dataset(
    examples: GlueExamples,
    preprocessor: Callable[[Any], dict[str, tf.Tensor]],
    batch_size: int,
    *,
    with_labels: bool = True,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of `(inputs, labels)` (or `inputs` alone) with the tokenization in the graph.

    Texts are batched as strings and `preprocessor` (a `BertPreprocessor`) runs inside
    `Dataset.map`, on `text_a` alone or on the pair `(text_a, text_b)`. Labels are int32 ids,
    or float32 scores for STS-B.

    Args:
        examples: what `read_glue_split` / `load_tfds` returned.
        preprocessor: strings (or a pair of string batches) -> a dict of model inputs.
        batch_size: examples per batch (the global batch under a distribution strategy).
        with_labels: yield `(inputs, labels)`; `False` yields inputs only (for `predict`).
        shuffle: for training: repeat the examples forever, each epoch in its own order that
            depends only on `seed` and the epoch (`shuffle_epochs`), so a resumed or
            distributed run sees the same batches. The dataset is then infinite and batches
            run across epoch boundaries.
        drop_remainder: drop a last, smaller batch (static batch shapes).

    Example:
    >>> import numpy as np
    >>> from keras_llm.data.glue import GlueExamples, get_task, make_dataset
    >>> from keras_llm.tokenizers import BertPreprocessor, WordPieceTokenizer
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad"]
    >>> pre = BertPreprocessor(WordPieceTokenizer(vocab), sequence_length=6)
    >>> examples = GlueExamples(get_task("sst2"), "dev", ["good", "bad"], None,
    ...                         np.array([1, 0], "int32"))
    >>> inputs, labels = next(iter(make_dataset(examples, pre, batch_size=2)))
    >>> inputs["token_ids"].numpy().tolist(), labels.numpy().tolist()
    ([[2, 4, 3, 0, 0, 0], [2, 5, 3, 0, 0, 0]], [1, 0])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}.")
    if len(examples) == 0:
        raise ValueError(f"No examples to batch in {examples.source or examples.split}.")
    if with_labels and examples.labels is None:
        raise ValueError(
            f"{examples.source or examples.split} has no labels (a test split); pass "
            "with_labels=False to batch its inputs for prediction."
        )
    features = tuple(tf.constant(texts, tf.string) for texts in examples.features)
    elements: tuple = (features, examples.labels) if with_labels else (features,)
    dataset = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle:
        dataset = shuffle_epochs(dataset, seed)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    def tokenize(texts, *labels):
        inputs = preprocessor(texts[0] if len(texts) == 1 else tuple(texts))
        return (inputs, labels[0]) if labels else inputs

    return dataset.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True).prefetch(tf.data.AUTOTUNE)


# --- Predictions, metrics and submissions -------------------------------------------------------
def predictions_from_outputs(task: str | GlueTask, outputs: Any) -> np.ndarray:
    """Classifier outputs `[n, num_classes]` -> label ids (argmax), or `[n, 1]` -> scores."""
    task = task if isinstance(task, GlueTask) else get_task(task)
    outputs = np.asarray(outputs, dtype="float32")
    if outputs.ndim != 2 or outputs.shape[1] != task.num_classes:
        raise ValueError(
            f"GLUE {task.name} expects outputs of shape [n, {task.num_classes}]; "
            f"got {outputs.shape}."
        )
    if task.is_regression:
        return outputs[:, 0]
    return outputs.argmax(axis=-1).astype("int32")


def evaluate_predictions(
    task: str | GlueTask, labels: Sequence | np.ndarray, predictions: Sequence | np.ndarray
) -> dict[str, float]:
    """The task's official metrics (`{"f1": ..., "accuracy": ...}` for MRPC, ...)."""
    task = task if isinstance(task, GlueTask) else get_task(task)
    return {
        name: float(value)
        for name, value in classification_metrics(
            np.asarray(labels), np.asarray(predictions), list(task.metrics)
        ).items()
    }


def write_submission(
    output_dir: str | os.PathLike, examples: GlueExamples, predictions: Sequence | np.ndarray
) -> Path:
    """Writes a GLUE leaderboard file (`SST-2.tsv`, `MNLI-m.tsv`, ...) into `output_dir`.

    The file has the header `index<TAB>prediction` and one row per test example: the label
    as the GLUE files write it (`0`/`1`, `entailment`, ...) for classification, the score with
    three decimals (clipped to the 0-5 range) for STS-B. Returns the path written.
    """
    task = examples.task
    if examples.index is None:
        raise ValueError(
            f"{examples.source or examples.split} has no example ids: submissions are written "
            "for test splits."
        )
    predictions = np.asarray(predictions)
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples.")
    if task.is_regression:
        low, high = task.label_range or (-math.inf, math.inf)
        values = [f"{float(np.clip(p, low, high)):.3f}" for p in predictions]
    else:
        ids = predictions.astype("int64")
        if ids.min() < 0 or ids.max() >= task.num_classes:
            raise ValueError(f"Label ids must be in [0, {task.num_classes}); got {ids.min()}, "
                             f"{ids.max()}.")
        values = [task.labels[i] for i in ids]
    path = Path(output_dir) / task.submission_file(examples.split)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{i}\t{v}\n" for i, v in zip(examples.index, values, strict=True)]
    path.write_text("index\tprediction\n" + "".join(lines), encoding="utf-8")
    return path


__all__ = [
    "GLUE_TASKS",
    "GLUE_TASK_NAMES",
    "GlueDataError",
    "GlueExamples",
    "GlueTask",
    "available_test_splits",
    "evaluate_predictions",
    "get_task",
    "load_tfds",
    "make_dataset",
    "predictions_from_outputs",
    "read_glue_file",
    "read_glue_split",
    "task_folder",
    "write_submission",
]
