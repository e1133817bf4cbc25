"""Test-only task loaders and defenses (referenced by lazy targets from tests)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from harness.records import Sample


def bad_image_samples(task_name: str, directory: str) -> list[Sample]:
    """One good image, one corrupt file, one missing file."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(good)
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return [
        Sample(task=task_name, id="good", prompt="What colour is this?", image=str(good), harmful=False),
        Sample(task=task_name, id="corrupt", prompt="What colour is this?", image=str(corrupt), harmful=False),
        Sample(task=task_name, id="missing", prompt="What colour is this?", image=str(folder / "nope.png"), harmful=False),
    ]


def text_samples(task_name: str, count: int) -> list[Sample]:
    return [Sample(task=task_name, id=f"q{i}", prompt=f"Say the number {i}.", harmful=i % 2 == 0) for i in range(count)]


