"""Trigger adapters: they parse, call one service and map errors, nothing more."""
