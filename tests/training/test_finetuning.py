"""The shared fine-tuning runner: settings, freezing, evaluation, early stopping, resume."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from keras_llm.data import SAMPLE_DIR, load_sample_sentiment
from keras_llm.models import BertClassifier
from keras_llm.training import finetuning
from keras_llm.training.finetuning import FinetuningConfig, FinetuningRun, set_trainable_layers


def tiny_config(tmp_path, **overrides) -> FinetuningConfig:
    settings = dict(init_checkpoint="bert_tiny", vocab_file=str(SAMPLE_DIR / "vocab.txt"),
                    output_dir=str(tmp_path / "run"), max_seq_length=32, batch_size=16,
                    learning_rate=1e-3, num_train_steps=8, steps_per_checkpoint=4, seed=1)
    settings.update(overrides)
    return FinetuningConfig(**settings)


def sample_batches(preprocessor, count=128):
    sentences, labels = load_sample_sentiment()
    dataset = tf.data.Dataset.from_tensor_slices((sentences[:count], labels[:count]))
    dataset = dataset.shuffle(count, seed=0).batch(16, drop_remainder=True)
    return dataset.map(lambda x, y: (preprocessor(x), y))


def weights(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def build_run(tmp_path, **overrides):
    run = FinetuningRun(tiny_config(tmp_path, **overrides), primary_metric="accuracy")
    preprocessor = run.load_preprocessor()
    model = run.load_model(BertClassifier, num_classes=2)
    run.compile(model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                num_train_examples=128)
    return run, preprocessor, model


def test_settings_are_checked_with_their_fix():
    with pytest.raises(ValueError, match="strategy must be one of"):
        FinetuningConfig(strategy="tpu")
    with pytest.raises(ValueError, match="warmup_ratio must be in"):
        FinetuningConfig(warmup_ratio=2.0)
    with pytest.raises(ValueError, match="exclusive"):
        FinetuningConfig(freeze_encoder=True, trainable_layers=2)
    with pytest.raises(ValueError, match="multiple of steps_per_checkpoint"):
        FinetuningConfig(eval_every=150, steps_per_checkpoint=100)


def test_flags_define_every_config_field():
    flag_values = flags.FlagValues()
    finetuning.define_flags(default_task="sst2", task_names=["sst2", "cola"],
                            flag_values=flag_values)
    flag_values(["prog", "--task=cola", "--num_train_steps=7", "--freeze_encoder"])
    config = FinetuningConfig.from_flags(flag_values)
    assert (config.task, config.num_train_steps, config.freeze_encoder) == ("cola", 7, True)
    defined = {f.name for f in __import__("dataclasses").fields(FinetuningConfig)}
    assert defined <= set(flag_values)


def test_missing_vocabulary_and_checkpoint_are_clear_errors(tmp_path):
    run = FinetuningRun(tiny_config(tmp_path, vocab_file=None,
                                    init_checkpoint=str(tmp_path / "no_vocab")))
    (tmp_path / "no_vocab").mkdir()
    with pytest.raises(FileNotFoundError, match=r"folder .*no_vocab has no vocab\.txt.*"
                       "--vocab_file"):
        run.load_preprocessor()
    run = FinetuningRun(tiny_config(tmp_path, vocab_file=None))  # A preset brings none.
    with pytest.raises(FileNotFoundError, match="bert_tiny is a preset .* pass --vocab_file"):
        run.load_preprocessor()
    run = FinetuningRun(tiny_config(tmp_path, vocab_file=str(tmp_path / "absent.txt")))
    with pytest.raises(FileNotFoundError, match="--vocab_file .*absent.txt does not exist"):
        run.load_preprocessor()
    run = FinetuningRun(tiny_config(tmp_path, init_checkpoint="bert_galactic"))
    with pytest.raises(FileNotFoundError, match="bert_tiny"):
        run.load_model(BertClassifier, num_classes=2)


@pytest.mark.parametrize("checkpoint", ["/nonexistent", "bert_huge"])
@pytest.mark.parametrize("vocab_file", [None, "given"])
def test_a_wrong_checkpoint_is_reported_before_the_vocabulary(tmp_path, checkpoint, vocab_file):
    """run_glue.py --init_checkpoint=/nonexistent once said 'No WordPiece vocabulary found
    (looked for ['/vocab.txt'])': the checkpoint is checked first, with the presets listed."""
    vocab = str(SAMPLE_DIR / "vocab.txt") if vocab_file else None
    run = FinetuningRun(tiny_config(tmp_path, init_checkpoint=checkpoint, vocab_file=vocab))
    with pytest.raises(FileNotFoundError) as error:
        run.load_preprocessor()
    message = str(error.value)
    assert message.startswith(f"--init_checkpoint {checkpoint!r} is neither an existing file "
                              "or folder nor a preset (bert_base, ")
    assert "bert_tiny" in message and "vocab" not in message


def test_checkpoint_kinds(tmp_path, minilm_dir):
    def kind(checkpoint):
        return FinetuningRun(tiny_config(tmp_path, init_checkpoint=checkpoint)).checkpoint_kind()

    assert kind("bert_tiny") == "preset"
    assert kind(minilm_dir) == "path"
    (tmp_path / "model.keras").write_bytes(b"")
    assert kind(str(tmp_path / "model.keras")) == "keras"
    with pytest.raises(FileNotFoundError, match="other.keras does not exist"):
        kind(str(tmp_path / "other.keras"))
    with pytest.raises(ValueError, match="Pass --init_checkpoint"):
        kind(None)


def test_eval_every_names_the_flag_to_change():
    with pytest.raises(ValueError, match=r"eval_every=2 must be a positive multiple of "
                       r"steps_per_checkpoint=500 .*pass --steps_per_checkpoint=2 \(or a divisor "
                       r"of it\), or an --eval_every that is a multiple of 500"):
        FinetuningConfig(eval_every=2, steps_per_checkpoint=500)
    with pytest.raises(ValueError, match="eval_every must be at least 1, not 0"):
        FinetuningConfig(eval_every=0)


def parse_flags(*argv, **defaults) -> flags.FlagValues:
    flag_values = flags.FlagValues()
    finetuning.define_flags(flag_values=flag_values, **defaults)
    flag_values(["prog", *argv])
    return flag_values


def test_eval_every_sets_the_checkpoint_interval_unless_it_is_given():
    # Without --steps_per_checkpoint, checkpoints fall on the evaluations.
    config = FinetuningConfig.from_flags(parse_flags("--eval_every=2"))
    assert (config.eval_every, config.steps_per_checkpoint) == (2, 2)
    config = FinetuningConfig.from_flags(parse_flags("--eval_every=300",
                                                     steps_per_checkpoint=250))
    assert config.steps_per_checkpoint == 300
    # A multiple of the default interval keeps it.
    config = FinetuningConfig.from_flags(parse_flags("--eval_every=2000"))
    assert config.steps_per_checkpoint == 500
    # An explicit interval (flag or override) is the user's: the error names the fix.
    with pytest.raises(ValueError, match="pass --steps_per_checkpoint=2 "):
        FinetuningConfig.from_flags(parse_flags("--eval_every=2", "--steps_per_checkpoint=500"))
    with pytest.raises(ValueError, match="pass --steps_per_checkpoint=2 "):
        FinetuningConfig.from_flags(parse_flags("--eval_every=2"), steps_per_checkpoint=500)


def test_scripts_that_do_not_fine_tune_leave_out_the_task_flags():
    flag_values = parse_flags("--num_train_steps=3", task_flags=False)
    assert not {"task", "data_dir", "tfds_name"} & set(flag_values)
    config = FinetuningConfig.from_flags(flag_values)
    assert (config.task, config.data_dir, config.num_train_steps) == (None, None, 3)
    assert {"task", "data_dir", "tfds_name"} <= set(parse_flags())


def test_remat_reaches_the_backbone_from_a_preset_a_folder_and_a_keras_file(tmp_path, minilm_dir):
    run, _, model = build_run(tmp_path, remat=True)
    assert model.backbone.remat
    path = str(tmp_path / "model.keras")
    model.save(path)
    assert keras.models.load_model(path).backbone.remat  # In the saved config.
    plain_path = str(tmp_path / "plain.keras")
    build_run(tmp_path / "plain")[2].save(plain_path)
    run = FinetuningRun(tiny_config(tmp_path / "again", init_checkpoint=plain_path, remat=True))
    run.load_preprocessor()
    assert run.load_model(BertClassifier, num_classes=2).backbone.remat
    run = FinetuningRun(tiny_config(tmp_path / "hf", init_checkpoint=minilm_dir, vocab_file=None,
                                    remat=True))
    run.load_preprocessor()
    assert run.load_model(BertClassifier, num_classes=2).backbone.remat


def test_plan_rounds_up_to_whole_checkpoint_intervals(tmp_path):
    run = FinetuningRun(tiny_config(tmp_path, num_train_steps=None, num_train_epochs=1.0,
                                    steps_per_checkpoint=3))
    assert run.plan_steps(num_train_examples=100) == 9  # ceil(100 / 16) = 7 -> 9.
    assert run.steps_per_checkpoint == 3


@pytest.mark.parametrize("mode", ["freeze_encoder", "trainable_layers"])
def test_frozen_weights_stay_bit_identical(tmp_path, mode):
    options = {"freeze_encoder": True} if mode == "freeze_encoder" else {"trainable_layers": 1}
    run, preprocessor, model = build_run(tmp_path, **options)
    backbone = model.backbone
    if mode == "freeze_encoder":
        frozen, moving = backbone.weights, model.classifier.weights
    else:
        frozen = backbone.embeddings.weights + backbone.encoder_blocks[0].weights
        moving = (backbone.encoder_blocks[-1].weights + backbone.pooler.weights
                  + model.classifier.weights)
    frozen_before, moving_before = weights(frozen), weights(moving)
    run.fit(model, sample_batches(preprocessor), verbose=0)
    for before, after in zip(frozen_before, weights(frozen), strict=True):
        np.testing.assert_array_equal(before, after)
    assert all(np.abs(b - a).max() > 0 for b, a in zip(moving_before, weights(moving),
                                                          strict=True))


def test_trainable_layers_beyond_the_encoder_is_an_error():
    model = BertClassifier(keras_llm_bert(), num_classes=2)
    with pytest.raises(ValueError, match="only 2 layers"):
        set_trainable_layers(model, trainable_layers=5)


def keras_llm_bert():
    from keras_llm.models import Bert

    return Bert.from_preset("bert_tiny", vocab_size=200, max_sequence_length=32)


def test_early_stopping_restores_the_best_weights(tmp_path):
    # A crafted metric sequence: best at step 8, worse at 12 and 16 -> stop at 16 (patience 2),
    # and the model ends with the weights it had at step 8.
    scores = iter([0.5, 0.9, 0.7, 0.6, 0.95])
    snapshots = {}

    def evaluate(model):
        step = int(model.optimizer.iterations)
        snapshots[step] = weights(model.weights)
        return {"accuracy": next(scores)}

    run, preprocessor, model = build_run(tmp_path, num_train_steps=20, steps_per_checkpoint=2,
                                         eval_every=4, early_stopping_patience=2)
    summary = run.fit(model, sample_batches(preprocessor), evaluate=evaluate, verbose=0)
    assert [h["step"] for h in summary["eval_history"]] == [4, 8, 12, 16]
    assert summary["best_step"] == 8 and summary["stopped_at_step"] == 16
    for expected, actual in zip(snapshots[8], weights(model.weights), strict=True):
        np.testing.assert_array_equal(expected, actual)

    # Restarted with the same flags, the stopped run trains no more and keeps the best weights.
    run, preprocessor, again = build_run(tmp_path, num_train_steps=20, steps_per_checkpoint=2,
                                         eval_every=4, early_stopping_patience=2)
    summary = run.fit(again, sample_batches(preprocessor), evaluate=evaluate, verbose=0)
    assert summary["best_step"] == 8
    for expected, actual in zip(snapshots[8], weights(again.weights), strict=True):
        np.testing.assert_array_equal(expected, actual)


def test_fit_evaluates_writes_results_and_exports(tmp_path):
    run, preprocessor, model = build_run(tmp_path, export_dir=str(tmp_path / "serving"))
    summary = run.fit(model, sample_batches(preprocessor),
                      evaluate=lambda m: {"accuracy": 0.5}, verbose=0)
    assert summary["train_steps"] == 8 and summary["eval_history"] == [
        {"step": 8, "accuracy": 0.5}]
    path = run.write_results({"accuracy": 0.5, **summary})
    written = json.loads(open(path).read())
    assert written["accuracy"] == 0.5 and written["config"]["num_train_steps"] == 8
    version_dir = run.export(model, preprocessor)
    served = tf.saved_model.load(version_dir).signatures["serving_default"](
        tf.constant(["a good film"]))
    assert served["logits"].shape == (1, 2)
    assert (tmp_path / "run" / "logs").is_dir()
