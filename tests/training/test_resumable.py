"""A run killed mid-way and restarted ends with the weights of an uninterrupted run."""

import doctest
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_llm.models import Gpt, GptCausalLM
from keras_llm.training import create_adamw, fit_resumable, read_checkpoint_state
from keras_llm.training.resumable import check_step_flags

BLOCKS = np.random.default_rng(0).integers(0, 50, size=(24, 9)).astype("int32")


def make_model():
    keras.utils.set_random_seed(0)
    model = GptCausalLM(Gpt(vocab_size=50, num_layers=1, num_heads=2, hidden_size=16,
                            intermediate_size=32, max_sequence_length=16, dropout=0.0))
    model.compile(optimizer=create_adamw(1e-2))
    return model


def batches():
    dataset = tf.data.Dataset.from_tensor_slices(BLOCKS).shuffle(24, seed=1)
    return dataset.batch(4, drop_remainder=True).map(lambda b: {"token_ids": b})


class Kill(keras.callbacks.Callback):
    def __init__(self, at_batch):
        super().__init__()
        self.seen, self.at_batch = 0, at_batch

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.at_batch:
            raise KeyboardInterrupt


def weights(model):
    return [keras.ops.convert_to_numpy(v) for v in model.weights]


def test_killed_run_resumes_at_the_same_step_and_data(tmp_path):
    reference = make_model()
    fit_resumable(reference, batches(), 12, str(tmp_path / "reference"), 4, verbose=0)

    interrupted = make_model()
    with pytest.raises(KeyboardInterrupt):
        fit_resumable(interrupted, batches(), 12, str(tmp_path / "run"), 4,
                      callbacks=[Kill(at_batch=6)], verbose=0)
    assert read_checkpoint_state(str(tmp_path / "run"))["step"] == 4  # Steps 5-6 are lost.

    resumed = make_model()
    _, start = fit_resumable(resumed, batches(), 12, str(tmp_path / "run"), 4, verbose=0)
    assert start == 4
    assert int(resumed.optimizer.iterations) == 12
    for a, b in zip(weights(resumed), weights(reference), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)

    # A finished run restarted trains nothing more.
    again = make_model()
    history, start = fit_resumable(again, batches(), 12, str(tmp_path / "run"), 4, verbose=0)
    assert history is None and start == 12


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ValueError, match="multiple of steps_per_checkpoint"):
        fit_resumable(make_model(), batches(), 10, str(tmp_path), 4, verbose=0)
    (tmp_path / "checkpoint_state.json").write_text("{broken")
    with pytest.raises(ValueError, match="corrupt"):
        fit_resumable(make_model(), batches(), 8, str(tmp_path), 4, verbose=0)
    (tmp_path / "checkpoint_state.json").write_text(json.dumps(
        {"step": 4, "latest": "ckpt-4.weights.h5", "checkpoints": []}))
    with pytest.raises(FileNotFoundError, match="ckpt-4.weights.h5, which is missing"):
        fit_resumable(make_model(), batches(), 8, str(tmp_path), 4, verbose=0)


def test_step_flags_are_checked_with_the_flags_to_change():
    finder = doctest.DocTestFinder().find(check_step_flags)
    assert doctest.DocTestRunner().run(finder[0]).failed == 0  # The docstring's example.
    check_step_flags(600, 100, total_flag="--train_steps")
    with pytest.raises(ValueError) as error:
        check_step_flags(5, 50)
    assert str(error.value) == (
        "--num_train_steps=5 must be a multiple of --steps_per_checkpoint=50 (a run stops on a "
        "checkpoint): pass --steps_per_checkpoint=5 or --num_train_steps=50.")
    with pytest.raises(ValueError, match=r"^--train_steps=7 must be a multiple of "
                       r"--steps_per_checkpoint=100 .*--steps_per_checkpoint=7 or "
                       r"--train_steps=100\.$"):
        check_step_flags(7, 100, total_flag="--train_steps")
    # The largest interval below the asked one that divides the steps, or the nearest counts.
    with pytest.raises(ValueError, match=r"--steps_per_checkpoint=75 or --num_train_steps=100 "
                       r"or 200\.$"):
        check_step_flags(150, 100)
    with pytest.raises(ValueError, match=r"pass --num_train_steps=100 or 200\.$"):
        check_step_flags(101, 100)  # A prime: checkpointing every step is no fix worth naming.
    with pytest.raises(ValueError, match="--num_train_steps must be at least 1, not 0"):
        check_step_flags(0, 50)
