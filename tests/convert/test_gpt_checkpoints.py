"""GPT-2 import: parity of logits and greedy generation with Hugging Face transformers."""

import json

import numpy as np
import pytest
from keras import ops

from keras_llm.convert import CheckpointError
from keras_llm.models import Gpt, GptCausalLM

torch = pytest.importorskip("torch", reason="the parity oracle needs torch (the [test] extra)")
transformers = pytest.importorskip("transformers")

CONFIG = dict(vocab_size=211, n_positions=48, n_embd=32, n_layer=3, n_head=4,
              bos_token_id=210, eos_token_id=210)


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**CONFIG)).eval()
    path = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(path)
    return model, path


def test_logits_match_transformers(reference_dir):
    reference, path = reference_dir
    lm = GptCausalLM.from_pretrained(str(path))
    token_ids = np.random.default_rng(0).integers(0, 211, size=(3, 17))
    with torch.no_grad():
        expected = reference(torch.tensor(token_ids)).logits.numpy()
    np.testing.assert_allclose(ops.convert_to_numpy(lm({"token_ids": token_ids})), expected,
                               atol=1e-4)


def test_greedy_generation_matches_transformers(reference_dir):
    reference, path = reference_dir
    lm = GptCausalLM.from_pretrained(str(path))
    prompts = [[3, 14, 15, 92, 65, 35], [89, 79], [32, 38, 46, 26]]
    ours = lm.generate(prompts, max_new_tokens=12)
    for row, prompt in zip(ours, prompts, strict=True):
        with torch.no_grad():
            theirs = reference.generate(torch.tensor([prompt]), max_new_tokens=12,
                                        do_sample=False, pad_token_id=210, eos_token_id=None)
        np.testing.assert_array_equal(row[: len(prompt) + 12], theirs.numpy()[0])


def test_dropout_rates_come_from_the_config(tmp_path):
    model = transformers.GPT2Model(transformers.GPT2Config(**CONFIG, resid_pdrop=0.2,
                                                           attn_pdrop=0.0))
    model.save_pretrained(tmp_path)
    gpt = Gpt.from_pretrained(str(tmp_path))
    assert (gpt.dropout, gpt.attention_dropout) == (0.2, 0.0)
    gpt = Gpt.from_pretrained(str(tmp_path), dropout=0.0)
    assert (gpt.dropout, gpt.attention_dropout) == (0.0, 0.0)


def test_pytorch_bin_and_prefixless_keys(tmp_path):
    torch.manual_seed(1)
    reference = transformers.GPT2Model(transformers.GPT2Config(**CONFIG)).eval()
    reference.config.to_json_file(str(tmp_path / "config.json"))
    torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")
    gpt = Gpt.from_pretrained(str(tmp_path))
    token_ids = np.random.default_rng(1).integers(0, 211, size=(2, 9))
    with torch.no_grad():
        expected = reference(torch.tensor(token_ids)).last_hidden_state.numpy()
    np.testing.assert_allclose(ops.convert_to_numpy(gpt(token_ids)), expected, atol=1e-4)


def test_bad_checkpoints(tmp_path, reference_dir):
    from safetensors.numpy import load_file, save_file

    _, path = reference_dir
    with pytest.raises(CheckpointError, match="folder not found"):
        Gpt.from_pretrained(str(tmp_path / "missing"))
    config = json.loads((path / "config.json").read_text())
    weights = load_file(str(path / "model.safetensors"))

    def write(config_changes=None, drop=None, extra=None):
        folder = tmp_path / "bad"
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps({**config, **(config_changes or {})}))
        tensors = {k: v for k, v in weights.items() if k != drop}
        tensors.update(extra or {})
        save_file(tensors, str(folder / "model.safetensors"))
        return str(folder)

    with pytest.raises(CheckpointError, match="'bert' model"):
        Gpt.from_pretrained(write({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="scale_attn_by_inverse_layer_idx"):
        Gpt.from_pretrained(write({"scale_attn_by_inverse_layer_idx": True}))
    with pytest.raises(CheckpointError, match="lacks the tensor 'h.2.mlp.c_fc.weight'"):
        Gpt.from_pretrained(write(drop="transformer.h.2.mlp.c_fc.weight"))
    with pytest.raises(CheckpointError, match="match no layer.*h.3.ln_1.weight"):
        Gpt.from_pretrained(write(extra={"transformer.h.3.ln_1.weight": np.ones(32, "float32")}))
    with pytest.raises(CheckpointError, match=r"wte.weight.*\(211, 32\).*\(211, 64\)"):
        Gpt.from_pretrained(write({"n_embd": 64}))
    untied = {"lm_head.weight": np.zeros((211, 32), "float32")}
    with pytest.raises(CheckpointError, match="lm_head.weight that differs"):
        Gpt.from_pretrained(write(extra=untied))
