"""Decoding strategies: how the next token is picked from the logits.

Every sampler is a small object with `select(logits, seed, step)`; the decode
loop (`keras_llm.generation.decoding`) calls it once per position, inside one
compiled loop. Randomness is counter-based: the noise for a step is a hash of
`(seed, step, row, token)`, so sampling is reproducible on every backend, needs
no random state threaded through the compiled loop, and a new seed does not
recompile.
"""

from __future__ import annotations

from keras import ops

_NEG_INF = -1e9


def _int32(value: int) -> int:
    """A 32-bit constant as the int32 with the same bits."""
    return value - (1 << 32) if value >= (1 << 31) else value


def _shift_right(h, bits: int):
    # Logical shift: arithmetic shift, then clear the copied sign bits.
    return ops.bitwise_and(ops.right_shift(h, bits), (1 << (32 - bits)) - 1)


def _mix(h):
    """MurmurHash3's 32-bit finalizer on int32 (multiplication wraps on every backend)."""
    h = ops.bitwise_xor(h, _shift_right(h, 16))
    h = h * _int32(0x85EBCA6B)
    h = ops.bitwise_xor(h, _shift_right(h, 13))
    h = h * _int32(0xC2B2AE35)
    return ops.bitwise_xor(h, _shift_right(h, 16))


def uniform_noise(shape: tuple, seed, step):
    """Uniform floats in (0, 1) of `shape` `[rows, vocab]`, a pure function of seed and step."""
    rows, columns = shape
    counter = ops.arange(rows, dtype="int32")[:, None] * columns + ops.arange(
        columns, dtype="int32"
    )[None, :]
    key = _mix(ops.cast(seed, "int32") * _int32(0x9E3779B9) + _mix(ops.cast(step, "int32")))
    bits = ops.bitwise_and(_mix(ops.bitwise_xor(counter, key)), (1 << 24) - 1)
    return (ops.cast(bits, "float32") + 0.5) / float(1 << 24)


def sample_from_logits(logits, seed, step):
    """Draws one token per row from `softmax(logits)` with the Gumbel-max trick."""
    noise = uniform_noise(tuple(ops.shape(logits)), seed, step)
    gumbel = -ops.log(-ops.log(noise))
    return ops.argmax(logits + gumbel, axis=-1)


class Sampler:
    """Picks the next token from float32 logits `[batch, vocab]`.

    A subclass implements `select(logits, seed, step)` with `keras.ops`, so that it
    compiles into the decode loop; `seed` and `step` make random draws reproducible
    without a stateful generator. Any instance can be passed as `strategy` to
    `generate`.

    Example:
    >>> import numpy as np
    >>> from keras import ops
    >>> class LeastLikely(Sampler):
    ...     def select(self, logits, seed, step):
    ...         return ops.argmin(logits, axis=-1)
    >>> int(LeastLikely().select(np.array([[0.1, 2.0, -0.3]]), 0, 0)[0])
    2
    """

    def select(self, logits, seed, step):
        raise NotImplementedError

    def cache_key(self) -> tuple:
        """What a compiled decode loop depends on (one compilation per distinct key)."""
        return (type(self).__name__, *sorted(vars(self).items()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class GreedySampler(Sampler):
    """The most likely token.

    Example:
    >>> import numpy as np
    >>> int(GreedySampler().select(np.array([[0.1, 2.0, 0.3]]), 0, 0)[0])
    1
    """

    def select(self, logits, seed, step):
        return ops.argmax(logits, axis=-1)


class RandomSampler(Sampler):
    """A draw from the whole distribution `softmax(logits / temperature)`.

    Example:
    >>> import numpy as np
    >>> tuple(RandomSampler(temperature=0.7).select(np.zeros((2, 5), "float32"), 1, 0).shape)
    (2,)
    """

    def __init__(self, temperature: float = 1.0):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive; received {temperature}.")
        self.temperature = float(temperature)

    def select(self, logits, seed, step):
        return sample_from_logits(logits / self.temperature, seed, step)


class TopKSampler(RandomSampler):
    """A draw among the `k` most likely tokens (Fan et al., 2018).

    Example:
    >>> import numpy as np
    >>> logits = np.array([[5.0, 4.0, -1.0, -2.0]], "float32")
    >>> int(TopKSampler(k=2).select(logits, seed=3, step=0)[0]) in (0, 1)
    True
    """

    def __init__(self, k: int, temperature: float = 1.0):
        super().__init__(temperature)
        if k < 1:
            raise ValueError(f"top_k must be at least 1; received {k}.")
        self.k = int(k)

    def select(self, logits, seed, step):
        k = min(self.k, logits.shape[-1])
        threshold = ops.top_k(logits, k)[0][:, -1:]
        masked = ops.where(logits >= threshold, logits, _NEG_INF)
        return sample_from_logits(masked / self.temperature, seed, step)


class TopPSampler(RandomSampler):
    """Nucleus sampling: a draw among the fewest tokens whose mass reaches `p`
    (Holtzman et al., 2020); optionally also capped at the `k` most likely.

    Example:
    >>> import numpy as np
    >>> logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], "float32"))
    >>> int(TopPSampler(p=0.7).select(logits, seed=0, step=0)[0]) in (0, 1)
    True
    """

    def __init__(self, p: float, temperature: float = 1.0, k: int | None = None):
        super().__init__(temperature)
        if not 0.0 < p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1]; received {p}.")
        self.p = float(p)
        self.k = None if k is None else int(k)

    def select(self, logits, seed, step):
        logits = logits / self.temperature
        k = logits.shape[-1] if self.k is None else min(self.k, logits.shape[-1])
        sorted_logits = ops.top_k(logits, k)[0]
        probabilities = ops.softmax(sorted_logits, axis=-1)
        mass_before = ops.cumsum(probabilities, axis=-1) - probabilities
        # Keep a token while the mass of the more likely ones is still below p.
        kept = ops.where(mass_before < self.p, sorted_logits, float("inf"))
        threshold = ops.min(kept, axis=-1, keepdims=True)
        masked = ops.where(logits >= threshold, logits, _NEG_INF)
        return sample_from_logits(masked, seed, step)


class BeamSampler(Sampler):
    """Beam search: keeps the `num_beams` best partial sequences at every step.

    Finished beams are ranked by `sum(log p) / generated_length ** length_penalty`
    (`length_penalty > 0` favours longer outputs). The decode loop runs beam
    search itself; `select` is not used.

    Example:
    >>> import numpy as np, keras_llm
    >>> lm = keras_llm.models.GptCausalLM(keras_llm.models.Gpt.from_preset("gpt2_tiny"))
    >>> beams = BeamSampler(num_beams=3, length_penalty=0.6)
    >>> tuple(lm.generate(np.array([[464, 3290]]), max_new_tokens=4, strategy=beams).shape)
    (1, 6)
    """

    def __init__(self, num_beams: int, length_penalty: float = 1.0):
        if num_beams < 1:
            raise ValueError(f"num_beams must be at least 1; received {num_beams}.")
        self.num_beams = int(num_beams)
        self.length_penalty = float(length_penalty)


def get_sampler(
    strategy: str | Sampler = "greedy",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    num_beams: int = 4,
    length_penalty: float = 1.0,
) -> Sampler:
    """The sampler for a strategy name (`"greedy"`, `"random"`, `"top_k"`, `"top_p"`,
    `"beam"`) and its arguments, or `strategy` itself if it is a `Sampler`.

    Example:
    >>> get_sampler("top_p", temperature=0.8)
    TopPSampler(temperature=0.8, p=0.9, k=None)
    >>> get_sampler("beam", num_beams=5)
    BeamSampler(num_beams=5, length_penalty=1.0)
    """
    if isinstance(strategy, Sampler):
        return strategy
    if strategy == "greedy":
        return GreedySampler()
    if strategy in ("random", "temperature"):
        return RandomSampler(temperature)
    if strategy == "top_k":
        return TopKSampler(50 if top_k is None else top_k, temperature)
    if strategy == "top_p":
        return TopPSampler(0.9 if top_p is None else top_p, temperature, top_k)
    if strategy == "beam":
        return BeamSampler(num_beams, length_penalty)
    raise ValueError(
        f"Unknown strategy {strategy!r}; expected 'greedy', 'random', 'top_k', 'top_p' or "
        "'beam' (or a Sampler)."
    )
