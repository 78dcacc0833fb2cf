"""GPT-2's published sizes (Radford et al., 2019) and small shapes for tests and examples."""

_GPT2_VOCAB_SIZE = 50257


def _gpt(num_layers: int, hidden_size: int, num_heads: int, vocab_size: int = _GPT2_VOCAB_SIZE,
         max_sequence_length: int = 1024) -> dict:
    return dict(
        vocab_size=vocab_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        max_sequence_length=max_sequence_length,
    )


GPT_PRESETS = {
    "gpt2_small": _gpt(12, 768, 12),  # 124M
    "gpt2_medium": _gpt(24, 1024, 16),  # 355M
    "gpt2_large": _gpt(36, 1280, 20),  # 774M
    "gpt2_xl": _gpt(48, 1600, 25),  # 1.5B
    # Small shapes with the GPT-2 vocabulary, for tests and CPU smoke runs.
    "gpt2_tiny": _gpt(2, 64, 2, max_sequence_length=256),
    "gpt2_mini": _gpt(4, 256, 4, max_sequence_length=512),
}
