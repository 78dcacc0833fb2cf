"""The BERT sizes Google published (Turc et al., 2019 for the compact ones)."""

_BERT_VOCAB_SIZE = 30522


def _bert(num_layers: int, hidden_size: int, num_heads: int) -> dict:
    return dict(
        vocab_size=_BERT_VOCAB_SIZE,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
    )


BERT_PRESETS = {
    "bert_tiny": _bert(2, 128, 2),
    "bert_mini": _bert(4, 256, 4),
    "bert_small": _bert(4, 512, 8),
    "bert_medium": _bert(8, 512, 8),
    "bert_base": _bert(12, 768, 12),
    "bert_large": _bert(24, 1024, 16),
}
