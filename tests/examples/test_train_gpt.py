"""examples/train_gpt.py end to end: trains, logs, checkpoints, and resumes where it stopped."""

import json
import math

import pytest

from tests.examples.test_examples import run_example

TINY = ["--num_layers=1", "--num_heads=2", "--hidden_size=32", "--sequence_length=32",
        "--batch_size=4", "--steps_per_checkpoint=2", "--validation_batches=2",
        "--sample_tokens=8", "--sample_prompt=To"]


@pytest.mark.slow
def test_train_then_resume(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 60)
    out = tmp_path / "run"
    common = [f"--text_file={text}", f"--output_dir={out}", *TINY]
    run_example("train_gpt.py", *common, "--train_steps=4", f"--export_dir={tmp_path / 'served'}",
                "--export_max_new_tokens=8")
    assert (tmp_path / "served" / "1" / "saved_model.pb").is_file()
    first = json.loads((out / "results.json").read_text())
    assert first["resumed_from_step"] == 0
    assert first["validation_loss"] < math.log(256)  # Already better than uniform bytes.
    assert (out / "model.keras").is_file() and (out / "samples.txt").read_text().count("---") == 2
    assert list((out / "logs").rglob("events.out.tfevents*"))

    # The same run asked to go further picks up at step 4, with its optimizer state.
    run_example("train_gpt.py", *common, "--train_steps=6")
    second = json.loads((out / "results.json").read_text())
    assert second["resumed_from_step"] == 4
    state = json.loads((out / "checkpoints" / "checkpoint_state.json").read_text())
    assert state["step"] == 6
