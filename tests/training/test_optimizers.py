import keras
import numpy as np

from keras_llm.training import create_adamw


def test_no_weight_decay_on_norms_and_biases():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.LayerNormalization()])
    optimizer = create_adamw(1e-3, weight_decay=0.5, global_clipnorm=None)
    optimizer.build(model.trainable_variables)
    decayed = {v.path.split("/")[-1]: optimizer._use_weight_decay(v)
               for v in model.trainable_variables}
    assert decayed == {"kernel": True, "bias": False, "gamma": False, "beta": False}


def test_gradient_accumulation_and_clipping():
    optimizer = create_adamw(0.1, global_clipnorm=1.0, gradient_accumulation_steps=2)
    assert optimizer.global_clipnorm == 1.0 and optimizer.gradient_accumulation_steps == 2
    variable = keras.Variable(np.zeros(2, "float32"))
    optimizer.apply_gradients([(np.ones(2, "float32") * 100, variable)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), 0)  # Accumulating.
    optimizer.apply_gradients([(np.ones(2, "float32") * 100, variable)])
    assert np.all(keras.ops.convert_to_numpy(variable) < 0)
