"""envhub's core: the environment domain, its use cases and the adapters to real systems."""
