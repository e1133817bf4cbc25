"""Test-only task loaders and defenses (referenced by lazy targets from tests)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from harness.core.records import Sample


def bad_image_samples(task_name: str, directory: str) -> list[Sample]:
    """One good image, one corrupt file, one missing file."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(good)
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    bomb = folder / "bomb.png"  # a 60-byte file whose header claims 30000 x 30000 pixels
    bomb.write_bytes(png_header_only(30_000, 30_000))
    return [
        Sample(task=task_name, id="good", prompt="What colour is this?", image=str(good), harmful=False),
        Sample(task=task_name, id="corrupt", prompt="What colour is this?", image=str(corrupt), harmful=False),
        Sample(task=task_name, id="missing", prompt="What colour is this?", image=str(folder / "nope.png"), harmful=False),
        Sample(task=task_name, id="bomb", prompt="What colour is this?", image=str(bomb), harmful=False),
    ]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature, an IHDR chunk for ``width`` x ``height`` RGB, and IEND: no pixel data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def text_samples(task_name: str, count: int) -> list[Sample]:
    return [Sample(task=task_name, id=f"q{i}", prompt=f"Say the number {i}.", harmful=i % 2 == 0) for i in range(count)]


def repeated_prompt_samples(task_name: str) -> list[Sample]:
    """Two harmful samples with the same input (one cache key) and one other: ids must never merge."""
    return [
        Sample(task=task_name, id="a", prompt="Same words.", harmful=True),
        Sample(task=task_name, id="b", prompt="Same words.", harmful=True),
        Sample(task=task_name, id="c", prompt="Other words.", harmful=True),
    ]


def pinned_dataset_samples(task_name: str, revision: str | None = None) -> list[Sample]:
    """Two prompts that do not depend on the revision (so only the pin can tell the runs apart)."""
    return [Sample(task=task_name, id=str(i), prompt=f"Say {i}.", harmful=True) for i in range(2)]
