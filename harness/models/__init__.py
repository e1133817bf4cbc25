"""Models: a catalog of specs (pure data) and one adapter over the Hugging Face VLM classes."""
