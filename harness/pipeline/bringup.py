"""Bring-up: a defended model, resolved, fingerprinted and (only when needed) loaded, in one place.

Every entry point that needs a model goes through :class:`BringUp`: ``harness eval``, ``harness
calibrate``, the lm-eval bridge and the benches. The sequence is always the same:

1. resolve the model spec (registered name, Hub id or local folder) and the defense (registry name and
   parameters);
2. resolve "auto" dtype and device to what will run (CPU and GPU numerics differ, so they must not
   share cache rows);
3. fingerprint the model *without loading it*, let the defense find and hash its calibration artifacts
   (``prepare``: a missing calibration fails now, before any weights load), and fingerprint the
   defense: the two fingerprints are the model/defense part of every cache key;
4. :meth:`BringUp.load` loads the weights once, on first need, and fingerprints them again: a builder
   may have materialised them (the first use of smol-llava), and later runs must find what this one
   stored, so a changed fingerprint re-prepares the defense and is reported to the caller.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.defense_api.adapter import VLMAdapter
    from harness.defense_api.defense import Defense
    from harness.models.spec import ModelSpec

log = logging.getLogger("harness.pipeline.bringup")


@dataclass
class BringUp:
    """A model under a defense, ready to fingerprint requests; the weights load on :meth:`load`."""

    spec: "ModelSpec"
    defense_name: str
    defense: "Defense"
    dtype: str
    device: str
    model_fingerprint: dict[str, Any]
    defense_fingerprint: dict[str, Any]
    _adapter: "VLMAdapter | None" = field(default=None, repr=False)

    @classmethod
    def resolve(
        cls,
        model: str,
        defense: str = "none",
        defense_params: dict[str, Any] | None = None,
        *,
        dtype: str | None = "auto",
        device: str | None = "auto",
    ) -> "BringUp":
        """Steps 1-3 above: names resolved, fingerprints taken, nothing loaded."""
        from harness import registries
        from harness.core.hub import resolve_device
        from harness.models.catalog import resolve_model
        from harness.models.spec import resolve_dtype

        spec = resolve_model(registries.models(), model)
        defense_name = registries.defenses().canonical(defense)
        instance = registries.defenses().get(defense_name)(**(defense_params or {}))
        dtype_name, device_name = resolve_dtype(spec, dtype), resolve_device(device)
        model_fingerprint = model_fingerprint_of(spec, dtype_name, device_name)
        instance.prepare(spec.name, model_fingerprint)
        return cls(spec, defense_name, instance, dtype_name, device_name, model_fingerprint, instance.fingerprint())

    def with_defense(self, defense: str, defense_params: dict[str, Any] | None = None) -> "BringUp":
        """The same model (and, once loaded, the same weights in memory) under another defense: several
        defenses in one command load the model at most once."""
        from harness import registries

        name = registries.defenses().canonical(defense)
        instance = registries.defenses().get(name)(**(defense_params or {}))
        instance.prepare(self.spec.name, self.model_fingerprint)
        return BringUp(self.spec, name, instance, self.dtype, self.device, dict(self.model_fingerprint),
                       instance.fingerprint(), self._adapter)

    @property
    def loaded(self) -> bool:
        return self._adapter is not None

    def load(self) -> "VLMAdapter":
        """The model's adapter, loaded on the first call. Afterwards ``model_fingerprint`` (and, when
        it changed, ``defense_fingerprint``) describe what was actually loaded."""
        if self._adapter is not None:
            return self._adapter
        log.info("loading model %s (dtype %s, device %s)", self.spec.name, self.dtype, self.device)
        start = time.perf_counter()
        self._adapter = self.spec.builder.load()(self.spec, dtype=self.dtype, device=self.device)
        log.info("model loaded in %.1f s", time.perf_counter() - start)
        loaded = model_fingerprint_of(self.spec, self.dtype, self.device)
        if loaded != self.model_fingerprint:
            log.info("model fingerprint changed on load (the weights were built now)")
            self.model_fingerprint = loaded
            self.defense.prepare(self.spec.name, loaded)
            self.defense_fingerprint = self.defense.fingerprint()
        return self._adapter

    def release(self) -> None:
        """Drop the model and return cached accelerator memory (a classifier judge may load next)."""
        if self._adapter is None:
            return
        self._adapter = None
        if self.device.startswith("cuda"):
            import gc

            import torch

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def model_fingerprint_of(spec: "ModelSpec", dtype: str, device: str) -> dict[str, Any]:
    """What identifies the model in cache keys: the spec's fingerprint of its weights, the device, and
    the default system prompt the adapter adds to every prompt without one (only where the spec has one,
    so that other models keep their keys)."""
    fingerprint = {**spec.fingerprinter.load()(spec, dtype), "device": device}
    if spec.options.get("default_system"):
        fingerprint["default_system"] = spec.options["default_system"]
    return fingerprint


def load_model(model: str, *, dtype: str | None = "auto", device: str | None = "auto") -> tuple["VLMAdapter", BringUp]:
    """An undefended model, loaded: for calibration and benches that drive the adapter themselves."""
    bringup = BringUp.resolve(model, "none", dtype=dtype, device=device)
    return bringup.load(), bringup
