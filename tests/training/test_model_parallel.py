"""Model parallelism on JAX: a model split Megatron-style over a (2 batch, 2 model) mesh of four
CPU devices computes the loss and the training steps of the unsplit model.

Each case runs in a fresh JAX process (this file, run as a script), because the number of
host devices is fixed when JAX starts (`XLA_FLAGS=--xla_force_host_platform_device_count=4`).
The process builds the model unsplit and takes two AdamW steps (global norm clipping and
weight decay included; the first step's loss is that of the initial weights), then builds it
again under
`keras.distribution.ModelParallel` with the same initial weights and does the same.
"""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from keras_llm.training import FinetuningConfig, make_strategy
from keras_llm.training.distribution import model_parallel_distribution

REPO = Path(__file__).resolve().parents[2]
CASES = ("bert", "gpt", "t5", "bert_fsdp_vocab_parallel")
TOLERANCE = 1e-5


def run_case(case: str) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, __file__, case], env=env, capture_output=True,
                            text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # A JAX process each: about 20-30 s of two shared CPU cores.
@pytest.mark.parametrize("case", CASES)
def test_the_split_model_trains_like_the_whole_one(case):
    result = run_case(case)
    assert result["devices"] == 4
    whole, split = result["whole"], result["split"]
    assert abs(split["loss"] - whole["loss"]) < TOLERANCE, (whole, split)
    for a, b in zip(whole["train_losses"], split["train_losses"], strict=True):
        assert abs(a - b) < TOLERANCE, (whole, split)
    assert result["max_weight_difference"] < TOLERANCE, result
    assert whole["updated"] > 0.01  # The steps really moved the weights.
    # Really split: the fused QKV kernel ([out, in]) holds half its output features on each
    # device, and so do its AdamW moments; the batch is split over the batch axis.
    qkv = result["qkv_kernel"]
    expected = ["model", "batch"] if "fsdp" in case else ["model", None]
    assert qkv["spec"] == expected, qkv
    assert qkv["shard_shape"][0] == qkv["shape"][0] // 2
    assert result["qkv_momentum_spec"] == expected
    assert result["split_weights"] >= 4 * 2  # qkv, output, intermediate, output per block.
    assert result["replicas"] == 2
    if case == "bert_fsdp_vocab_parallel":
        assert result["token_embedding_spec"] == ["model", None]
        message = result["indivisible_error"]
        assert "token_embedding/embeddings" in message and "(95)" in message, message


def test_model_parallel_needs_jax_and_a_model_axis_that_divides_the_devices():
    if keras.backend.backend() != "jax":
        with pytest.raises(ValueError, match="model_parallel needs the JAX backend"):
            make_strategy("model_parallel", model_parallelism=2, layout="Bert")
    with pytest.raises(ValueError, match="applies to --strategy=model_parallel only"):
        make_strategy("mirrored", model_parallelism=2)
    with pytest.raises(ValueError, match=r"model_parallelism=3 must be a positive divisor of "
                                         r"the 2 device\(s\)"):
        model_parallel_distribution(3, "Bert", devices=["cpu:0", "cpu:1"])
    with pytest.raises(ValueError, match="model_parallel needs a layout"):
        model_parallel_distribution(2, None, devices=["cpu:0", "cpu:1"])


def test_the_flags_are_checked():
    with pytest.raises(ValueError, match="model_parallelism=2 needs strategy=model_parallel"):
        FinetuningConfig(init_checkpoint="bert_tiny", model_parallelism=2)
    with pytest.raises(ValueError, match="model_parallelism must be at least 1"):
        FinetuningConfig(strategy="model_parallel", model_parallelism=0)
    config = FinetuningConfig(strategy="model_parallel", model_parallelism=2)
    assert config.model_parallelism == 2


def test_padded_prediction_keeps_every_example_in_order():
    import numpy as np
    import tensorflow as tf

    from keras_llm.training.finetuning import predict_with_padded_batches

    inputs = {"a": keras.Input((3,), name="a"), "b": keras.Input((2,), name="b")}
    merged = keras.layers.Concatenate()([inputs["a"], inputs["b"]])
    model = keras.Model(inputs, {"y": keras.layers.Dense(4)(merged), "z": merged})
    rows = np.random.default_rng(0).normal(size=(7, 5)).astype("float32")
    features = {"a": rows[:, :3], "b": rows[:, 3:]}
    expected = model.predict(features, verbose=0)
    predict_with_padded_batches(model, replicas=3)  # Batches of 4 and 3 become 6 and 3.
    dataset = tf.data.Dataset.from_tensor_slices((features, np.zeros(7))).batch(4)
    for outputs in (model.predict(dataset), model.predict(features, batch_size=4),
                    model.predict(dataset.unbatch().map(lambda x, y: x).batch(5))):
        assert outputs["y"].shape == (7, 4)
        np.testing.assert_allclose(outputs["y"], expected["y"], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(outputs["z"], expected["z"])
    assert model.predict(dataset, steps=1)["z"].shape == (4, 5)


def test_docstring_examples():
    from keras_llm.training import distribution

    result = doctest.testmod(distribution, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --- The child process ---------------------------------------------------------------------

def _case(case: str):
    """`(make_model, x, y, loss, layout)` for a case; small shapes, no dropout."""
    import numpy as np

    from keras_llm.models import T5, Bert, BertClassifier, Gpt, GptCausalLM, T5Seq2SeqLM

    rng = np.random.default_rng(0)
    batch, length, vocab = 8, 12, 96
    mask = np.ones((batch, length), "int32")
    mask[::3, -4:] = 0  # Some padded rows.
    ids = rng.integers(4, vocab, (batch, length)).astype("int32")
    small = dict(num_layers=2, num_heads=4, hidden_size=64, intermediate_size=128, dropout=0.0)
    if case.startswith("bert"):
        def make_model():
            backbone = Bert(vocab_size=vocab, max_sequence_length=32, **small)
            return BertClassifier(backbone, num_classes=3, dropout=0.0)
        x = {"token_ids": ids, "padding_mask": mask}
        y = rng.integers(0, 3, (batch,))
        return make_model, x, y, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if case == "gpt":
        def make_model():
            return GptCausalLM(Gpt(vocab_size=vocab, max_sequence_length=32, **small))
        return make_model, {"token_ids": ids, "padding_mask": mask}, None, "auto"
    if case == "t5":  # T5 v1.1: gated feed-forward, untied LM head, cross-attention.
        def make_model():
            return T5Seq2SeqLM(T5(vocab_size=vocab, key_value_size=16, feed_forward="gated-gelu",
                                  tie_embeddings=False, **small))
        x = {"encoder_token_ids": ids, "encoder_padding_mask": mask,
             "decoder_token_ids": np.roll(ids, 1, axis=1), "decoder_padding_mask": mask}
        return make_model, x, ids, keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    raise ValueError(case)


def _train(make_model, x, y, loss, weights=None) -> tuple[keras.Model, dict]:
    import numpy as np

    from keras_llm.training import create_adamw

    keras.utils.set_random_seed(1)
    model = make_model()
    if not model.built:
        model.build({key: (None, None) for key in x} if y is not None else None)
    if weights is not None:
        model.set_weights(weights)
    before = [np.asarray(w) for w in model.weights]
    result = {"initial": before}
    model.compile(optimizer=create_adamw(1e-2, weight_decay=0.01, global_clipnorm=1.0),
                  loss=loss)
    result["train_losses"] = [float(model.train_on_batch(x, y, return_dict=True)["loss"])
                              for _ in range(2)]
    result["loss"] = result["train_losses"][0]  # The loss of the initial weights.
    after = [np.asarray(w) for w in model.weights]
    result["updated"] = max(float(np.abs(a - b).max()) for a, b in zip(before, after, strict=True))
    return model, result


def _child(case: str) -> dict:
    import jax
    import numpy as np

    from keras_llm.models.layout import get_layout_map

    make_model, x, y, loss = _case(case)
    whole_model, whole = _train(make_model, x, y, loss)
    initial = whole["initial"]

    family = {"bert": "Bert", "gpt": "Gpt", "t5": "T5"}[case.split("_")[0]]
    if case == "bert_fsdp_vocab_parallel":
        distribution = model_parallel_distribution(
            2, lambda mesh: get_layout_map("Bert", mesh, fsdp=True, vocab_parallel=True))
        keras.distribution.set_distribution(distribution)
        replicas = distribution.num_model_replicas
    else:
        _, replicas = make_strategy("model_parallel", model_parallelism=2, layout=family)
    split_model, split = _train(make_model, x, y, loss, initial)

    def spec(variable):
        return [None if a is None else str(a) for a in variable.value.sharding.spec]

    qkv = next(v for v in split_model.weights if v.path.endswith("/qkv/kernel"))
    momentum = next(v for v in split_model.optimizer.variables
                    if "qkv_kernel" in v.path and "momentum" in v.path)
    shard = qkv.value.addressable_shards[0].data
    result = {
        "devices": len(jax.devices()),
        "replicas": replicas,
        "whole": {k: v for k, v in whole.items() if k != "initial"},
        "split": {k: v for k, v in split.items() if k != "initial"},
        "max_weight_difference": max(
            float(np.abs(np.asarray(a) - np.asarray(b)).max())
            for a, b in zip(whole_model.weights, split_model.weights, strict=True)),
        "qkv_kernel": {"spec": spec(qkv), "shape": list(qkv.shape),
                       "shard_shape": list(shard.shape)},
        "qkv_momentum_spec": spec(momentum),
        "split_weights": sum("model" in spec(v) for v in split_model.weights),
    }
    if case == "bert_fsdp_vocab_parallel":
        token = next(v for v in split_model.weights if "token_embedding" in v.path)
        result["token_embedding_spec"] = spec(token)
        try:
            from keras_llm.models import Bert

            Bert(vocab_size=95, num_layers=1, num_heads=2, hidden_size=8,
                 intermediate_size=8).build({"token_ids": (None, None)})
            result["indivisible_error"] = "no error"
        except ValueError as error:
            result["indivisible_error"] = str(error)
    return result


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1])))
