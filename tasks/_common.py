"""Helpers shared by the task loaders and metrics (data paths, HF datasets, images, generations)."""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

from harness.core.images import decode_errors, materialize
from harness.core import paths
from harness.core.records import Generation, Sample
from harness.tasks import DATA_DIR

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

# Sub-folder of ``<cache>/images/<task>/`` whose files are never written: placeholders for absent images.
MISSING_DIR = "missing"


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
    revision: str | None = None,
) -> Any:
    """``datasets.load_dataset`` with the arguments a task YAML (or a test) can set; ``revision`` is the
    task's pinned dataset commit (``TaskSpec.revision``).

    Imported lazily: listing tasks must not import ``datasets``.
    """
    import datasets

    if isinstance(data_files, str):
        data_files = str(data_path(data_files)) if not data_files.startswith(("hf://", "http")) else data_files
    return datasets.load_dataset(path, name, split=split, data_files=data_files, cache_dir=cache_dir, revision=revision)


def save_image(image: "Image", task_name: str) -> str:
    """Write an in-memory dataset image under the cache (content-addressed) and return its path."""
    return str(materialize(image, paths.cache_dir() / "images" / task_name))


@dataclass(frozen=True)
class ImageRef:
    """The file a sample will be prompted with, and why it does not exist (None = it should)."""

    path: str
    error: str | None = None

    def meta(self) -> dict[str, Any]:
        """The Sample.meta entry recording a missing image (empty when the image is there)."""
        return {} if self.error is None else {"image_error": self.error}


def placeholder_image(task_name: str, sample_id: str, reason: str) -> ImageRef:
    """A path that is never created, for a sample whose image cannot be produced at all.

    The pipeline's input check then fails that one sample ("image file not found", plus ``reason`` from
    ``Sample.meta["image_error"]``) before any model work, and the run goes on.
    """
    safe_id = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id)
    path = paths.cache_dir() / "images" / task_name / MISSING_DIR / safe_id
    return ImageRef(str(path), reason)


def log_missing(task_name: str, refs: Sequence[ImageRef]) -> int:
    """Log how many samples of a load have no usable image (they fail alone at generation)."""
    missing = [ref for ref in refs if ref.error is not None]
    if missing:
        log.warning(
            "task %s: %d of %d samples have no usable image and will fail at generation (first: %s)",
            task_name, len(missing), len(refs), missing[0].error,
        )
    return len(missing)


def rows_with_images(
    dataset: Any,
    task_name: str,
    column: str = "image",
    sample_id: Callable[[dict[str, Any], int], str] | None = None,
) -> Iterator[tuple[dict[str, Any], ImageRef]]:
    """Yield (row, image) for an HF dataset whose ``column`` holds images, written to the image cache.

    Rows sharing an image (MME question pairs, MMBench circular copies) are decoded and written once:
    the column is read undecoded and identical encoded bytes map to the same file. A row whose cell is
    empty, undecodable or points to a missing file does not stop the load: it gets a placeholder
    (:func:`placeholder_image`, named ``sample_id(row, index)``, default the row index) with the reason,
    so that one bad image fails one sample; how many did is logged once the rows are read.
    """
    import datasets

    if isinstance(dataset.features.get(column), datasets.Image):
        dataset = dataset.cast_column(column, datasets.Image(decode=False))
    written: dict[str, str] = {}
    refs: list[ImageRef] = []
    for index, row in enumerate(dataset):
        raw = row.get(column)
        name = sample_id(row, index) if sample_id is not None else f"row-{index}"
        if raw is None:
            ref = placeholder_image(task_name, name, "dataset row has no image")
        else:
            try:
                ref = ImageRef(_materialise(raw, task_name, written))
            except decode_errors() as exc:  # one bad cell fails one sample
                ref = placeholder_image(task_name, name, f"cannot read dataset image: {type(exc).__name__}: {exc}")
        refs.append(ref)
        yield row, ref
    log_missing(task_name, refs)


def _materialise(raw: Any, task_name: str, written: dict[str, str]) -> str:
    """Write one undecoded HF image cell ({"bytes", "path"} or a PIL image) to the image cache.

    Raises OSError or ValueError for undecodable data and FileNotFoundError for a path-only cell whose
    file is gone.
    """
    from PIL import Image as PILImage

    if isinstance(raw, PILImage.Image):
        return save_image(raw, task_name)
    data = raw.get("bytes")
    key = hashlib.sha256(data).hexdigest() if data else f"path:{raw.get('path')}"
    if key not in written:
        source = io.BytesIO(data) if data else raw.get("path")
        if not source:
            raise ValueError("image cell has neither bytes nor a path")
        with PILImage.open(source) as image:
            image.load()
            written[key] = save_image(image, task_name)
    return written[key]


def generated_texts(
    samples: Sequence[Sample], generations: Mapping[str, Generation]
) -> Iterator[tuple[Sample, str]]:
    """(sample, text) for every sample with a usable generation; the rest are not scored."""
    for sample in samples:
        generation = generations.get(sample.id)
        if generation is not None and generation.ok:
            yield sample, generation.text  # type: ignore[misc]  # ok implies text is a str
