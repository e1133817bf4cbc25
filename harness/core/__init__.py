"""The core: typed records, the registry type, stores and caches, paths, images and statistics.

It imports nothing else from the harness (checked by import-linter, see pyproject.toml)."""
