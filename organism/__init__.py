"""smol-llava's build lab: the trainer (``organism.train``), its probes and its trial records.

A plain folder at the repository root, not part of the installed package (pyproject's
package list names ``harness`` and its subpackages only), and nothing under those
imports it. Run its modules from the repository root, e.g. ``python -m organism.train``; see
organism/README.md.
"""
