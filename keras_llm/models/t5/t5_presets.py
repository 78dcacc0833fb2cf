"""The T5 v1.0 and v1.1 sizes (Raffel et al., 2020) and a tiny shape for tests."""

_T5_VOCAB_SIZE = 32128


def _t5(num_layers, num_heads, hidden_size, intermediate_size, feed_forward="relu",
        tie_embeddings=True, key_value_size=64):
    return dict(
        vocab_size=_T5_VOCAB_SIZE,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_size=hidden_size,
        key_value_size=key_value_size,
        intermediate_size=intermediate_size,
        feed_forward=feed_forward,
        tie_embeddings=tie_embeddings,
    )


T5_PRESETS = {
    "t5_small": _t5(6, 8, 512, 2048),  # 60M
    "t5_base": _t5(12, 12, 768, 3072),  # 220M
    "t5_large": _t5(24, 16, 1024, 4096),  # 770M
    "t5_v1_1_small": _t5(8, 6, 512, 1024, "gated-gelu", tie_embeddings=False),
    "t5_v1_1_base": _t5(12, 12, 768, 2048, "gated-gelu", tie_embeddings=False),
    "t5_tiny": _t5(2, 4, 64, 128, key_value_size=16),
}
