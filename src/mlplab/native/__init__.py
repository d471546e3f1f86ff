"""The optional C kernels: their sources (`csrc/*.c`, package data) and the one loader that builds them."""
