"""Prometheus metrics: what each part counts, and how they are served."""
