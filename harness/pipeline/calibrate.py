"""Calibrate: fit a calibrated defense on a model and store its artifact (safetensors + JSON manifest).

The artifact format, the built-in data and what each defense fits live in
:mod:`harness.defense_api.calibration`; this stage brings the model up (:class:`BringUp`, as every
other entry point does), runs the defense's ``calibrate`` seeded, and writes the artifact with a
manifest of what was fitted on what.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from harness.defense_api.calibration import artifact_dir, learns_from_data, load_data, save_artifact
from harness.pipeline.bringup import BringUp
from harness.pipeline.record import provenance

log = logging.getLogger("harness.pipeline.calibrate")


def calibrate(
    defense_name: str,
    model_name: str,
    *,
    limit: int | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    out_dir: str | Path | None = None,
    data: str = "builtin",
    seed: int = 0,
    options: dict[str, Any] | None = None,
) -> Path:
    """Fit ``defense_name`` on ``model_name`` and store the artifact; returns its folder. ``options``:
    the defense's calibration-time options (:attr:`CalibratedDefense.calibration_params`)."""
    import torch

    from harness import registries

    defense = registries.defenses().canonical(defense_name)
    defense_class = registries.defenses().get(defense)
    if not learns_from_data(defense_class):
        raise ValueError(f"defense {defense!r} learns nothing from data: it needs no calibration")
    options = defense_class.calibration_options(options)  # before the model loads: a typo fails fast
    bringup = BringUp.resolve(model_name, dtype=dtype, device=device)  # the manifest records what ran
    spec, dtype, device = bringup.spec, bringup.dtype, bringup.device
    dataset = load_data(data, limit, seed)
    if len(dataset) < 2:
        raise ValueError("calibration needs at least 2 prompt pairs (--limit 2 or more)")
    adapter = bringup.load()
    # the loaded model's identity (a first build of smol-llava exists only now), without the device:
    # an artifact fitted on a CPU serves the same weights on a GPU
    fingerprint = {key: value for key, value in bringup.model_fingerprint.items() if key != "device"}

    log.info("calibrating %s on %s with %d prompt pairs (%s)", defense, spec.name, len(dataset), dataset.name)
    with torch.random.fork_rng(devices=[]):  # seeded locally: leave the caller's RNG state alone
        torch.manual_seed(seed)
        calibration = defense_class.calibrate(adapter, dataset, **options)

    manifest = {
        "defense": defense,
        "calibration_version": defense_class.calibration_version,
        "model": spec.name,
        "model_source": spec.source,
        "model_fingerprint": fingerprint,
        "model_layers": adapter.num_layers,
        "hidden_size": adapter.hidden_size,
        "dtype": dtype,
        "device": device,
        "seed": seed,
        "limit": limit,
        "calibration_params": options,
        "data": dataset.describe(),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        # Versions only, no git commit or platform: the manifest's sha256 enters the cache key, and a
        # re-fit that changes nothing must keep it.
        "provenance": {key: value for key, value in provenance(("torch", "transformers", "safetensors")).items()
                       if key in ("harness", "python", "packages")},
    }
    folder = Path(out_dir) if out_dir is not None else artifact_dir(defense, spec.name)
    save_artifact(folder, calibration, manifest)
    log.info("calibration stored in %s", folder)
    return folder
