"""Image files: content hashing, validation, and materialising in-memory images to files."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image


class BadImageError(ValueError):
    """A sample's image is missing or cannot be decoded."""


def decode_errors() -> tuple[type[BaseException], ...]:
    """What PIL raises for a file or buffer that is not a usable image: unreadable or truncated data,
    and ``DecompressionBombError`` (a header claiming more than twice PIL's pixel limit)."""
    from PIL import Image, UnidentifiedImageError

    return UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def check_image(path: str | Path) -> str:
    """Verify that ``path`` is a decodable image; return its content sha256. Raises BadImageError."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise BadImageError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decode fully: verify() misses truncated data
    except decode_errors() as exc:
        raise BadImageError(f"cannot decode image {path}: {type(exc).__name__}: {exc}") from exc
    return file_sha256(path)


def load_rgb(path: str | Path) -> "Image":
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def materialize(image: "Image", directory: Path) -> Path:
    """Save a PIL image as PNG named by its content hash (idempotent); return the path."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path
