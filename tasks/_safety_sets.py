"""Local image folders of the safety sets (MM-SafetyBench, JailBreakV-28K, VLSafe).

These benchmarks ship their images apart from the questions (a Google-Drive zip, COCO, a folder of an
HF repository). One absent image must not sink a whole task, so the loaders always emit the sample
with the expected path and the reason in ``Sample.meta["image_error"]`` (:class:`harness.tasks._common.ImageRef`);
the pipeline's input check (``harness.pipeline.plan.build_requests`` -> ``harness.core.images.check_image``) then
fails that one sample with "image file not found: <path> (<reason>)" before any model work, and the
run goes on. Images embedded in HF rows go through ``harness.tasks._common.rows_with_images``, which treats an
empty or undecodable cell the same way.
"""

from __future__ import annotations

from pathlib import Path

from harness.tasks._common import ImageRef, data_path


def images_root(root: str | Path) -> Path:
    """A loader-arg images folder: absolute as given, otherwise relative to ``tasks/data``."""
    return data_path(root)


def local_image(root: Path, relative: str | None) -> ImageRef:
    """``root / relative``; when that file is absent the ref keeps the expected path plus an error."""
    if not relative or not str(relative).strip():
        return ImageRef(str(root / "<no image path>"), f"row has no image path (images root {root})")
    path = root / str(relative).strip()
    if path.is_file():
        return ImageRef(str(path))
    return ImageRef(str(path), f"image {relative!r} not found under images root {root}")
