import math

import numpy as np
import pytest
from keras import ops

from keras_llm.training import WarmupDecay


def values(schedule, steps):
    return np.array([float(ops.convert_to_numpy(schedule(s))) for s in steps])


def test_linear_warmup_then_linear_decay():
    schedule = WarmupDecay(2e-5, total_steps=100, warmup_steps=10)
    np.testing.assert_allclose(values(schedule, [0, 5, 10, 55, 100, 150]),
                               [0, 1e-5, 2e-5, 1e-5, 0, 0], atol=1e-12)


def test_cosine_decay_to_floor():
    schedule = WarmupDecay(1.0, total_steps=110, warmup_steps=10, decay="cosine",
                           end_learning_rate=0.1)
    expected = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)) for p in (0, 0.25, 0.5, 1.0)]
    np.testing.assert_allclose(values(schedule, [10, 35, 60, 110]), expected, atol=1e-6)


def test_config_and_errors():
    schedule = WarmupDecay(1e-3, 50, 5, "cosine")
    assert WarmupDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="decay"):
        WarmupDecay(1e-3, 50, decay="step")
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupDecay(1e-3, 50, warmup_steps=60)
