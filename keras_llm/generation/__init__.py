"""Text generation shared by every generative model: samplers and the compiled decode loop."""

from keras_llm.generation.decoding import beam_search_loop, compile_stateful, sample_loop
from keras_llm.generation.samplers import (
    BeamSampler,
    GreedySampler,
    RandomSampler,
    Sampler,
    TopKSampler,
    TopPSampler,
    get_sampler,
)

__all__ = [
    "BeamSampler",
    "GreedySampler",
    "RandomSampler",
    "Sampler",
    "TopKSampler",
    "TopPSampler",
    "beam_search_loop",
    "compile_stateful",
    "get_sampler",
    "sample_loop",
]
