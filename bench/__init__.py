"""Benchmarks, run as ``python -m bench.NAME [--quick]`` (SPEC section 9)."""
