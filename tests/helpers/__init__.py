"""Helpers shared by tests (child programs for crash tests, journal builders)."""
