"""Shared test helpers: real brokers, daemons, databases and journals, and bounded polling.

Importable as ``helpers`` because pyproject.toml sets pytest's ``pythonpath = ["tests"]``;
a script run outside pytest sets ``PYTHONPATH=tests``."""
