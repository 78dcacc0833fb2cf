"""Throughput benchmarks of keras-llm next to keras-hub and Hugging Face (not the library)."""
