"""Calibration of activation-steering defenses: fit what a defense learns, store it, find it again.

``harness calibrate --defense D --model M`` loads the model, hands it and the calibration prompts to
``D.calibrate(adapter, data)`` (directions, probers, refusal heads, prototypes, thresholds) and writes

    calibration_dir()/<defense>/<model>/artifact.safetensors   the fitted tensors
    calibration_dir()/<defense>/<model>/manifest.json          data sources + sha256, layers, thresholds,
                                                               seed, model fingerprint, versions

At evaluation time :meth:`CalibratedDefense.prepare` finds that folder (or fails naming the command
that makes it), checks that it was fitted for the same model build, and puts the sha256 of both files
into the defense fingerprint, hence into every generation cache key.

Calibration data (``harness/calibration_data``, see its README): 100 harmful instructions and 100
paired harmless rewrites written for this harness, disjoint from the test sets (FigStep SafeBench,
XSTest). Pairs are ordered round-robin over categories; every fifth pair in that order is held out as
the validation split (used for layer / threshold / epoch selection). ``--data vlsafe:DIR`` reads the
official VLSafe training files instead, for users who have them locally.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from harness.defense_api.defense import Defense
from harness.core.paths import calibration_dir

if TYPE_CHECKING:
    import torch

    from harness.defense_api.adapter import VLMAdapter
    from harness.core.records import Request

log = logging.getLogger("harness.defense_api.calibration")

DATA_DIR = Path(__file__).resolve().parents[1] / "calibration_data"
ARTIFACT_FILE = "artifact.safetensors"
MANIFEST_FILE = "manifest.json"
VALIDATION_EVERY = 5  # every fifth pair (round-robin order) is held out for selection
# Fingerprint entries that may differ between calibration and use without changing what was fitted.
PORTABLE_FINGERPRINT_KEYS = ("device", "dtype")


# --------------------------------------------------------------------------------------------- data
@dataclass
class CalibrationPrompt:
    id: str
    prompt: str
    category: str = ""
    pair: str | None = None
    image: str | None = None

    def request(self, max_new_tokens: int = 64) -> "Request":
        from harness.defense_api.steering import text_request

        return text_request(self.prompt, image=self.image, sample_id=self.id, max_new_tokens=max_new_tokens)


@dataclass
class CalibrationData:
    """Paired harmful / harmless prompts (``harmful[i]`` pairs with ``harmless[i]``) and their provenance."""

    name: str
    harmful: list[CalibrationPrompt]
    harmless: list[CalibrationPrompt]
    sources: list[dict[str, Any]] = field(default_factory=list)
    split_name: str = "all"

    def __post_init__(self) -> None:
        if len(self.harmful) != len(self.harmless):
            raise ValueError(
                f"calibration data {self.name!r}: {len(self.harmful)} harmful vs {len(self.harmless)} harmless prompts"
            )

    def __len__(self) -> int:
        return len(self.harmful)

    def split(self, which: str) -> "CalibrationData":
        """``"train"`` or ``"val"`` (every VALIDATION_EVERY-th pair). With fewer than VALIDATION_EVERY pairs
        both splits are the whole set: tiny test runs still exercise the selection code."""
        if which not in ("train", "val"):
            raise ValueError(f"unknown split {which!r}")
        if len(self) < VALIDATION_EVERY:
            return replace(self, split_name=which)
        keep = [i for i in range(len(self)) if (i % VALIDATION_EVERY == VALIDATION_EVERY - 1) == (which == "val")]
        return replace(
            self,
            harmful=[self.harmful[i] for i in keep],
            harmless=[self.harmless[i] for i in keep],
            split_name=which,
        )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "pairs": len(self), "sources": self.sources}


def file_record(path: Path, rows: int) -> dict[str, Any]:
    from harness.core.images import file_sha256

    try:
        shown = str(path.resolve().relative_to(Path(__file__).resolve().parents[2]))
    except ValueError:
        shown = str(path)
    return {"path": shown, "sha256": file_sha256(path), "rows": rows}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


Pair = tuple[CalibrationPrompt, CalibrationPrompt]


def round_robin(pairs: Sequence[Pair]) -> list[Pair]:
    """Pairs interleaved across categories (file order within a category), so any prefix is balanced."""
    by_category: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_category.setdefault(pair[0].category, []).append(pair)
    queues = list(by_category.values())
    ordered = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def load_builtin_data(limit: int | None = None, directory: Path = DATA_DIR) -> CalibrationData:
    """The shipped prompt pairs (``harmful.jsonl`` / ``harmless.jsonl``), first ``limit`` pairs of the
    round-robin order."""
    harmful_path, harmless_path = directory / "harmful.jsonl", directory / "harmless.jsonl"
    harmful_rows, harmless_rows = _read_jsonl(harmful_path), _read_jsonl(harmless_path)
    harmless_by_id = {row["id"]: row for row in harmless_rows}
    pairs = []
    for row in harmful_rows:
        partner = harmless_by_id[row["pair"]]
        pairs.append((
            CalibrationPrompt(row["id"], row["prompt"], row.get("category", ""), row["pair"]),
            CalibrationPrompt(partner["id"], partner["prompt"], partner.get("category", ""), row["id"]),
        ))
    ordered = round_robin(pairs)[: limit or None]
    return CalibrationData(
        name="builtin",
        harmful=[pair[0] for pair in ordered],
        harmless=[pair[1] for pair in ordered],
        sources=[file_record(harmful_path, len(harmful_rows)), file_record(harmless_path, len(harmless_rows))],
    )


def load_vlsafe_data(directory: str | Path, limit: int | None = None, seed: int = 0) -> CalibrationData:
    """VLSafe training pairs, as the official AutoSteer / MoRAS code reads them (not used offline).

    ``directory`` holds ``VLSafe_harmlessnss_alignment.jsonl`` (``query``, ``image_id``),
    ``vlsafe_convert_safe.jsonl`` (``safe_query``, ``image_id``: the safe rewrite of the same line) and the
    COCO train2017 images under ``images/``. Pairs are drawn at random with ``seed`` (MoRAS: 50 pairs,
    numpy seed 0).
    """
    import numpy as np

    directory = Path(directory)
    harmful_path = directory / "VLSafe_harmlessnss_alignment.jsonl"
    safe_path = directory / "vlsafe_convert_safe.jsonl"
    harmful_rows, safe_rows = _read_jsonl(harmful_path), _read_jsonl(safe_path)
    count = min(len(harmful_rows), len(safe_rows))
    order = np.random.RandomState(seed).permutation(count)[: limit or count]
    harmful, harmless = [], []
    for index in order.tolist():
        bad, good = harmful_rows[index], safe_rows[index]
        harmful.append(CalibrationPrompt(f"vlsafe-{index}", bad["query"], "vlsafe", f"vlsafe-safe-{index}",
                                         str(directory / "images" / bad["image_id"])))
        harmless.append(CalibrationPrompt(f"vlsafe-safe-{index}", good["safe_query"], "vlsafe", f"vlsafe-{index}",
                                          str(directory / "images" / good["image_id"])))
    return CalibrationData(
        name="vlsafe",
        harmful=harmful,
        harmless=harmless,
        sources=[file_record(harmful_path, len(harmful_rows)), file_record(safe_path, len(safe_rows))],
    )


def has_images(data: CalibrationData) -> bool:
    return any(prompt.image for prompt in data.harmful + data.harmless)


def easyvqa_train_images(count: int) -> list[str]:
    """The first ``count`` images (by id) of easy-VQA's *training* split, shipped in the ``easy-vqa`` pip
    package: plain coloured shapes, no text, nothing harmful. The easyvqa task evaluates on the test split
    only, so these are disjoint from every test set."""
    import easy_vqa

    paths = easy_vqa.get_train_image_paths()
    ids = sorted(paths)
    if count > len(ids):
        raise ValueError(f"easy-vqa has {len(ids)} training images, {count} asked for")
    return [paths[image_id] for image_id in ids[:count]]


def with_benign_images(data: CalibrationData) -> CalibrationData:
    """``data`` with pair i given the i-th easy-VQA training image (both halves the same image, as a VLSafe
    query and its safe rewrite share one COCO image). Data that already has images is returned as it is."""
    if has_images(data):
        return data
    images = easyvqa_train_images(len(data))
    return replace(
        data,
        name=f"{data.name}+easyvqa-train-images",
        harmful=[replace(prompt, image=image) for prompt, image in zip(data.harmful, images)],
        harmless=[replace(prompt, image=image) for prompt, image in zip(data.harmless, images)],
        sources=[*data.sources, {"images": "easy-vqa 1.0 training split, the first images by id, one per pair",
                                 "count": len(images)}],
    )


def load_data(spec: str, limit: int | None = None, seed: int = 0) -> CalibrationData:
    """``builtin`` or ``vlsafe:DIR``."""
    if spec == "builtin":
        return load_builtin_data(limit)
    if spec.startswith("vlsafe:"):
        return load_vlsafe_data(spec.partition(":")[2], limit, seed)
    raise ValueError(f"unknown calibration data {spec!r}; use 'builtin' or 'vlsafe:DIR'")


# ----------------------------------------------------------------------------------------- artifacts
@dataclass
class Calibration:
    """What a defense's ``calibrate`` returns: tensors to store and the JSON-able facts of the fit."""

    tensors: dict[str, "torch.Tensor"]
    fit: dict[str, Any]


@dataclass
class Artifact:
    """A stored calibration, loaded."""

    path: Path
    tensors: dict[str, "torch.Tensor"]
    manifest: dict[str, Any]
    hashes: dict[str, str]

    @property
    def fit(self) -> dict[str, Any]:
        return self.manifest["fit"]


class CalibrationMissingError(FileNotFoundError, ValueError):
    """No usable calibration: the message names the command that makes one. (A ValueError too, so the
    CLI reports it as a plain error.)"""


def safe_name(name: str) -> str:
    return name.replace("/", "__").replace("@", "_at_")


def artifact_dir(defense: str, model: str) -> Path:
    return calibration_dir() / safe_name(defense) / safe_name(model)


def calibrate_command(defense: str, model: str) -> str:
    return f"harness calibrate --defense {defense} --model {model}"


def manifest_sha256(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its timestamp (a re-fit that changes nothing keeps
    the cache key)."""
    stable = {key: value for key, value in manifest.items() if key != "created_at"}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def comparable_fingerprint(fingerprint: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fingerprint.items() if key not in PORTABLE_FINGERPRINT_KEYS}


def save_artifact(folder: Path, calibration: Calibration, manifest: dict[str, Any]) -> Path:
    """Write tensors then manifest (the manifest, written last, marks a complete artifact)."""
    from safetensors.torch import save_file

    from harness.core.images import file_sha256

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in calibration.tensors.items()}
    tmp = folder / f"{ARTIFACT_FILE}.{os.getpid()}.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(folder / ARTIFACT_FILE)
    manifest = {
        **manifest,
        "artifact": {"file": ARTIFACT_FILE, "sha256": file_sha256(folder / ARTIFACT_FILE),
                     "tensors": {name: list(tensor.shape) for name, tensor in sorted(tensors.items())}},
        "fit": calibration.fit,
    }
    tmp_manifest = folder / f"{MANIFEST_FILE}.{os.getpid()}.tmp"
    tmp_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    tmp_manifest.replace(folder / MANIFEST_FILE)
    return folder


def load_artifact(defense: str, model: str, model_fingerprint: dict[str, Any] | None = None) -> Artifact:
    """The stored calibration of ``defense`` for ``model``; raises :class:`CalibrationMissingError` naming
    the command to run when it is missing, incomplete, corrupted or fitted for another build of the model."""
    from safetensors.torch import load_file

    from harness.core.images import file_sha256

    folder = artifact_dir(defense, model)
    command = calibrate_command(defense, model)
    manifest_path, tensor_path = folder / MANIFEST_FILE, folder / ARTIFACT_FILE
    if not manifest_path.is_file() or not tensor_path.is_file():
        raise CalibrationMissingError(
            f"defense {defense!r} has no calibration for model {model!r} (looked in {folder}); run: {command}"
        )
    manifest = json.loads(manifest_path.read_text())
    tensor_sha = file_sha256(tensor_path)
    if manifest.get("artifact", {}).get("sha256") != tensor_sha:
        raise CalibrationMissingError(f"{tensor_path} does not match its manifest (partial write?); re-run: {command}")
    if model_fingerprint is not None:
        fitted = comparable_fingerprint(manifest.get("model_fingerprint", {}))
        current = comparable_fingerprint(model_fingerprint)
        if fitted != current:
            raise CalibrationMissingError(
                f"the calibration of {defense!r} in {folder} was fitted for another build of {model!r} "
                f"({fitted} != {current}); re-run: {command}"
            )
    return Artifact(
        path=folder,
        tensors=load_file(str(tensor_path)),
        manifest=manifest,
        hashes={ARTIFACT_FILE: tensor_sha, MANIFEST_FILE: manifest_sha256(manifest)},
    )


class CalibratedDefense(Defense):
    """A defense whose behaviour depends on a stored calibration (see module docstring)."""

    # Bump when the fitting procedure changes: it is recorded in the manifest, and an artifact from an
    # older procedure is refused.
    calibration_version: ClassVar[int] = 1
    # Options fixed at calibration time (``harness calibrate --calibration-arg KEY=VALUE``) and their
    # defaults: what the fit depends on and inference must repeat (e.g. a prompt format). They are stored
    # in the manifest, so they are part of the artifact's sha256 and of every cache key.
    calibration_params: ClassVar[dict[str, Any]] = {}

    @classmethod
    def calibration_options(cls, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """The defaults overlaid with ``given``; an unknown option is a ValueError naming the known ones."""
        given = dict(given or {})
        unknown = set(given) - set(cls.calibration_params)
        if unknown:
            raise ValueError(
                f"defense {cls.name!r} has no calibration option(s) {sorted(unknown)}; "
                f"known: {sorted(cls.calibration_params) or 'none'}"
            )
        return {**cls.calibration_params, **given}

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.artifact: Artifact | None = None

    def prepare(self, model_name: str, model_fingerprint: dict[str, Any]) -> None:
        artifact = load_artifact(self.name, model_name, model_fingerprint)
        version = artifact.manifest.get("calibration_version")
        if version != self.calibration_version:
            raise CalibrationMissingError(
                f"the calibration of {self.name!r} in {artifact.path} has version {version}, this code needs "
                f"{self.calibration_version}; re-run: {calibrate_command(self.name, model_name)}"
            )
        self.artifact = artifact

    def artifact_hashes(self) -> dict[str, str]:
        return dict(self.artifact.hashes) if self.artifact is not None else {}

    def require_artifact(self) -> Artifact:
        if self.artifact is None:
            raise RuntimeError(f"defense {self.name!r} used before prepare(): its calibration is not loaded")
        return self.artifact

    def tensor(self, name: str, like: "torch.Tensor | None" = None, device: Any = None) -> "torch.Tensor":
        """A stored tensor, float32, on ``like``'s (or ``device``'s) device."""
        value = self.require_artifact().tensors[name].float()
        target = like.device if like is not None else device
        return value.to(target) if target is not None else value

    @classmethod
    def calibrate(cls, adapter: "VLMAdapter", data: CalibrationData, **options: Any) -> Calibration:
        """Fit on ``data``; ``options`` = :meth:`calibration_options` (empty for most defenses)."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------- calibrate
def learns_from_data(defense_class: Any) -> bool:
    """Whether a registered defense is fitted by ``harness calibrate`` before it can run."""
    return isinstance(defense_class, type) and issubclass(defense_class, CalibratedDefense)
