"""Help tests, the demo and the benchmark: real registries, sample artifacts, a plain pusher."""
