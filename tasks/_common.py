"""Helpers shared by the task loaders and metrics (data paths, HF datasets, images, generations)."""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from harness.images import materialize
from harness import paths
from harness.records import Generation, Sample
from tasks import DATA_DIR

if TYPE_CHECKING:
    from PIL.Image import Image


def data_path(path: str | Path) -> Path:
    """A loader-arg path: absolute as given, otherwise relative to ``tasks/data``."""
    path = Path(path)
    return path if path.is_absolute() else DATA_DIR / path


def is_missing(value: Any) -> bool:
    """True for the ways HF/pandas exports spell an empty cell (None, NaN, "nan", "none", "")."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in {"", "nan", "none"}


def load_hf_split(
    path: str,
    name: str | None = None,
    split: str = "test",
    data_files: str | list[str] | dict[str, Any] | None = None,
    cache_dir: str | None = None,
) -> Any:
    """``datasets.load_dataset`` with the arguments a task YAML (or a test) can set.

    Imported lazily: listing tasks must not import ``datasets``.
    """
    import datasets

    if isinstance(data_files, str):
        data_files = str(data_path(data_files)) if not data_files.startswith(("hf://", "http")) else data_files
    return datasets.load_dataset(path, name, split=split, data_files=data_files, cache_dir=cache_dir)


def save_image(image: "Image", task_name: str) -> str:
    """Write an in-memory dataset image under the cache (content-addressed) and return its path."""
    return str(materialize(image, paths.cache_dir() / "images" / task_name))


def rows_with_images(
    dataset: Any, task_name: str, column: str = "image"
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Yield (row, image path) for an HF dataset whose ``column`` holds images.

    Rows sharing an image (MME question pairs, MMBench circular copies) are decoded and written once:
    the column is read undecoded and identical encoded bytes map to the same file.
    """
    import datasets
    from PIL import Image as PILImage

    if isinstance(dataset.features.get(column), datasets.Image):
        dataset = dataset.cast_column(column, datasets.Image(decode=False))
    written: dict[str, str] = {}
    for row in dataset:
        raw = row[column]
        if raw is None:
            yield row, None
            continue
        if isinstance(raw, PILImage.Image):
            yield row, save_image(raw, task_name)
            continue
        data = raw.get("bytes")
        key = hashlib.sha256(data).hexdigest() if data else f"path:{raw.get('path')}"
        if key not in written:
            source = io.BytesIO(data) if data else raw["path"]
            with PILImage.open(source) as image:
                image.load()
                written[key] = save_image(image, task_name)
        yield row, written[key]


def generated_texts(
    samples: Sequence[Sample], generations: Mapping[str, Generation]
) -> Iterator[tuple[Sample, str]]:
    """(sample, text) for every sample with a usable generation; the rest are not scored."""
    for sample in samples:
        generation = generations.get(sample.id)
        if generation is not None and generation.ok:
            yield sample, generation.text  # type: ignore[misc]  # ok implies text is a str
