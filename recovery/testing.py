"""Pytest fixtures for the exchange simulator (being written)."""
