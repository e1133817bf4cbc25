"""Small embedded image thumbnails for the sample browser (Pillow, JPEG data URIs)."""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

log = logging.getLogger("harness.report")

THUMBNAIL_PX = 96
JPEG_QUALITY = 80


class ThumbnailCache:
    """Thumbnails by image path: many (model, defense) rows show the same sample's image."""

    def __init__(self, size: int = THUMBNAIL_PX):
        self.size = size
        self._cache: dict[str, str | None] = {}

    def data_uri(self, path: str | None) -> str | None:
        """``data:image/jpeg;base64,...`` of a ``size`` px thumbnail, or None if unreadable or no path."""
        if not path:
            return None
        if path not in self._cache:
            self._cache[path] = make_thumbnail(Path(path), self.size)
        return self._cache[path]


def make_thumbnail(path: Path, size: int = THUMBNAIL_PX) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster
            image = image.convert("RGB")
            image.thumbnail((size, size))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    except Exception as exc:  # noqa: BLE001 - a bad image (missing, corrupt, decompression bomb) only loses its thumbnail
        log.debug("no thumbnail for %s: %s", path, exc)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
