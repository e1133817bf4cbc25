"""Evaluation harness for inference-time safety defenses of multimodal LLMs.

Data flows one way: TaskSpec -> Sample -> Request -> Generation (cached) -> Judgement -> MetricRow -> Report.
Importing this package is cheap on purpose: heavy libraries (torch, transformers) load only when a model is used.
"""

__version__ = "0.1.0"
