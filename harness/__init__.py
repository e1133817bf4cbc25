"""Evaluation harness for inference-time safety defenses of multimodal LLMs.

Data flows one way: TaskSpec -> Sample -> Request -> Generation (cached) -> Judgement -> MetricRow -> Report.
Importing this package is cheap on purpose: heavy libraries (torch, transformers) load only when a model is used.
"""

from harness.core.version import __version__  # noqa: F401 - the package version


def evaluate(*args, **kwargs):  # type: ignore[no-untyped-def]
    """``harness.evaluate(model=..., defenses=[...], tasks=[...], limit=...)``: see :func:`harness.api.evaluate`
    (imported on first call, so ``import harness`` stays cheap)."""
    from harness.api import evaluate as run

    return run(*args, **kwargs)
