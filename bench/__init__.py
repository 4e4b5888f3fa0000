"""Benchmarks of Fechatter against a bare Tornado SSE broadcaster measured in the same run."""
