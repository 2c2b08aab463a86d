"""Adapters: one per real system, each implementing a port."""
