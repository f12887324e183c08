"""Benchmark harness: orascp against skopeo and curl floors on local docker-registry processes."""
