"""Benchmarks for the dt-connector receive path (run as modules: ``python -m bench.ingress``)."""
