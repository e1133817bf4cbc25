"""Throwaway trial scripts and their logs (smol-llava v7); not maintained, see README.md here."""
