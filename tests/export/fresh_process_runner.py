"""Runs SavedModel signatures in a process that cannot import Keras or keras-llm.

Usage: python fresh_process_runner.py calls.pkl outputs.pkl, where calls.pkl holds
{key: (saved_model_dir, signature_name, {input_name: numpy array})}.
"""

import importlib.abc
import pickle
import sys


class _Blocked(importlib.abc.MetaPathFinder):
    """Makes `import keras_llm` (or keras-hub) fail: the SavedModel must not need them."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras_llm", "keras_hub", "tf_keras"):
            raise ImportError(f"{name} must not be imported to serve the SavedModel")
        return None


import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402, F401 - registers the tokenizer ops

# After TensorFlow's own import (TF 2.21 itself imports parts of keras.src).
assert not [m for m in sys.modules if m.split(".")[0] == "keras_llm"]
sys.meta_path.insert(0, _Blocked())

with open(sys.argv[1], "rb") as f:
    calls = pickle.load(f)
loaded = {}
results = {}
for key, (path, name, inputs) in calls.items():
    if path not in loaded:
        loaded[path] = tf.saved_model.load(path)
    outputs = loaded[path].signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
    results[key] = {k: np.asarray(v.numpy()) for k, v in outputs.items()}
results["__modules__"] = sorted(m for m in sys.modules if m.split(".")[0] == "keras_llm")
with open(sys.argv[2], "wb") as f:
    pickle.dump(results, f)
