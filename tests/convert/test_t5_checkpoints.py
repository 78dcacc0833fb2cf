"""T5 import: parity of encoder outputs, logits and greedy generation with transformers."""

import json

import numpy as np
import pytest
from keras import ops

from keras_llm.convert import CheckpointError
from keras_llm.models import T5, T5Seq2SeqLM

torch = pytest.importorskip("torch", reason="the parity oracle needs torch (the [test] extra)")
transformers = pytest.importorskip("transformers")

CONFIG = dict(vocab_size=97, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3,
              num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=16,
              decoder_start_token_id=0)
VARIANTS = {"v1_0": dict(feed_forward_proj="relu", tie_word_embeddings=True),
            "v1_1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)}


def make_reference(variant, factor, tmp_path_factory):
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(
        **CONFIG, **VARIANTS[variant], initializer_factor=factor)).eval()
    path = tmp_path_factory.mktemp(variant)
    model.save_pretrained(path)
    return model, str(path)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def reference(request, tmp_path_factory):
    return make_reference(request.param, 1.0, tmp_path_factory)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def varied_reference(request, tmp_path_factory):
    # Larger weights make greedy outputs depend on the input (the default init
    # repeats one token), at the cost of larger float32 noise in the logits.
    return make_reference(request.param, 3.0, tmp_path_factory)


def inputs():
    rng = np.random.default_rng(0)
    encoder = rng.integers(2, 97, size=(3, 12))
    mask = np.ones_like(encoder)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    return encoder, mask, rng.integers(2, 97, size=(3, 8))


def test_encoder_output_and_logits_match(reference):
    model, path = reference
    lm = T5Seq2SeqLM.from_pretrained(path)
    assert lm.backbone.tie_embeddings == model.config.scale_decoder_outputs
    encoder, mask, decoder = inputs()
    with torch.no_grad():
        expected = model(input_ids=torch.tensor(encoder), attention_mask=torch.tensor(mask),
                         decoder_input_ids=torch.tensor(decoder))
    batch = {"encoder_token_ids": encoder, "encoder_padding_mask": mask,
             "decoder_token_ids": decoder}
    hidden = ops.convert_to_numpy(lm.backbone(batch)["encoder_sequence_output"])
    real = mask[..., None].astype(bool)
    np.testing.assert_allclose(np.where(real, hidden, 0),
                               np.where(real, expected.encoder_last_hidden_state.numpy(), 0),
                               atol=1e-4)
    np.testing.assert_allclose(ops.convert_to_numpy(lm(batch)), expected.logits.numpy(),
                               atol=1e-4)


def test_greedy_generation_matches(varied_reference):
    model, path = varied_reference
    lm = T5Seq2SeqLM.from_pretrained(path)
    encoder, mask, _ = inputs()
    rows = [list(row[m.astype(bool)]) for row, m in zip(encoder, mask, strict=True)]
    ours = lm.generate(rows, max_new_tokens=10, stop_token_ids=[])
    assert len({tuple(r) for r in ours}) > 1  # The oracle really varies with the input.
    for row, expected_row in zip(rows, ours, strict=True):
        with torch.no_grad():
            # use_cache=False: transformers' cache breaks with more decoder than encoder
            # layers (shared/ORACLES.md).
            theirs = model.generate(torch.tensor([row]), max_new_tokens=10, do_sample=False,
                                    use_cache=False, eos_token_id=None)
        np.testing.assert_array_equal(expected_row, theirs.numpy()[0, 1:])


def test_backbone_only_load(reference):
    _, path = reference
    assert T5.from_pretrained(path).num_decoder_layers == 3


def test_bad_checkpoints(tmp_path, reference):
    from safetensors.numpy import load_file, save_file

    _, path = reference
    with pytest.raises(CheckpointError, match="folder not found"):
        T5.from_pretrained(str(tmp_path / "missing"))
    config = json.loads(open(f"{path}/config.json").read())
    weights = load_file(f"{path}/model.safetensors")

    def write(changes=None, drop=None):
        folder = tmp_path / "bad"
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps({**config, **(changes or {})}))
        save_file({k: v for k, v in weights.items() if k != drop},
                  str(folder / "model.safetensors"))
        return str(folder)

    with pytest.raises(CheckpointError, match="'bart' model"):
        T5.from_pretrained(write({"model_type": "bart"}))
    missing = "decoder.block.2.layer.1.EncDecAttention.k.weight"
    with pytest.raises(CheckpointError, match=f"lacks the tensor '{missing}'"):
        T5.from_pretrained(write(drop=missing))
    with pytest.raises(CheckpointError, match="match no layer.*decoder.block.2"):
        T5.from_pretrained(write({"num_decoder_layers": 2}))
    with pytest.raises(CheckpointError, match=r"lacks the required keys \['d_kv'\]"):
        broken = {k: v for k, v in config.items() if k != "d_kv"}
        (tmp_path / "bad" / "config.json").write_text(json.dumps(broken))
        T5.from_pretrained(str(tmp_path / "bad"))
