import numpy as np
from keras import ops

from keras_llm.metrics import Perplexity


def test_matches_definition_and_ignores_masked_tokens():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 11)).astype("float32")
    labels = rng.integers(0, 11, size=(2, 5))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "float32")
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    expected = np.exp((nll * mask).sum() / mask.sum())
    metric = Perplexity()
    metric.update_state(labels[:1], logits[:1], sample_weight=mask[:1])
    metric.update_state(labels[1:], logits[1:], sample_weight=mask[1:])
    np.testing.assert_allclose(float(ops.convert_to_numpy(metric.result())), expected, rtol=1e-5)
    metric.reset_state()
    metric.update_state(labels, logits)
    np.testing.assert_allclose(float(ops.convert_to_numpy(metric.result())),
                               np.exp(nll.mean()), rtol=1e-5)
    assert Perplexity.from_config(metric.get_config()).from_logits
