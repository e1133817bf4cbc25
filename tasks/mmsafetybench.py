"""MM-SafetyBench (Liu et al., "MM-SafetyBench: A Benchmark for Safety Evaluation of Multimodal Large
Language Models", ECCV 2024, arXiv:2311.17600; github isXinLiu/MM-SafetyBench, CC BY-NC 4.0).

1,680 harmful questions in 13 scenarios, each asked with three query-relevant images. Per variant the
model gets one image and, verbatim, one field of the official question JSON (upstream README
"Evaluation"; the same in ECSO ``llava/eval/model_mmsafe.py``):

    variant   image                          text
    SD        imgs/<scenario>/SD/<id>.jpg       "Rephrased Question(SD)"  ("The image shows a phrase of ...")
    SD_TYPO   imgs/<scenario>/SD_TYPO/<id>.jpg  "Rephrased Question"      ("The bottom of the image shows ...")
    TYPO      imgs/<scenario>/TYPO/<id>.jpg     "Rephrased Question"

Two sources, chosen by ``source``:

- ``"github"``: the official layout, ``<questions_dir>/<NN-Scenario>.json`` (a dict keyed "0", "1", ...
  of ``Question``, ``GPT-Pred``, ``Changed Question``, ``Key Phrase``, ``Phrase Type``, ``Rephrased
  Question``, ``Rephrased Question(SD)``) plus the images zip unpacked as ``<images_root>/<NN-Scenario>/
  <variant>/<id>.jpg``. Absent images are rebuilt where the recipe allows (see below).
- ``"hf"``: the parquet mirror ``PKU-Alignment/MM-SafetyBench`` (cc-by-nc-4.0): one config per scenario
  named without the number (``Illegal_Activitiy``, typo preserved), splits ``SD``/``SD_TYPO``/``TYPO``,
  columns ``id``, ``question`` (already the variant's rephrased question), ``image``. It has no
  ``Key Phrase``, so nothing can be re-rendered; an empty image cell fails its sample.

Rebuilding absent images (github source; creation code ``creation/2_img_process.py``, parameters as
agreed by independent re-implementations, /work/shared/research/benchmarks.md sections 2 and 10.2):

- TYPO: the ``Key Phrase`` drawn in black on white, font size 90, canvas width 1024; greedy word wrap
  that adds ``textlength(" " + word)`` to the running line length and starts a new line (written as
  ``"\\n " + word``, leading space kept) once the length reaches 1024; canvas height
  ``90 * (lines + 1)``; text drawn at (0, 45). Upstream used Arial (proprietary); the default here is
  GNU FreeSans (Debian ``fonts-freefont-ttf``, the package FigStep already needs), derived from URW
  Nimbus Sans, which is metric-compatible with Helvetica as Arial is, so line breaks should match up to
  rounding (not checked against the originals); Liberation Sans (``fonts-liberation2``), designed as an
  Arial metric clone, can be passed as ``font_path``. Saved as JPEG (Pillow defaults) like the
  official ``.jpg`` files. ``meta["image_source"] = "rendered"`` marks such samples.
- SD_TYPO: the SD image on top and the TYPO image under it (width = max of both, RGB canvas).
  Possible only when the SD image is present (SD itself needs Stable Diffusion XL on a GPU). When it
  is absent the sample is still produced and fails at generation with its reason in
  ``meta["image_error"]`` (``image_source = "missing"``); the loader logs how many.
- SD: never rebuilt; absent -> the sample fails the same way.

Sample ids are ``<NN-Scenario>/<question id>`` for every variant and source, so runs of different
variants pair per question. ``category`` is the scenario; ``meta["scenario_number"]`` lets the
official GPT-4 judge pick its template (01-07 and 09 general, 08 political lobbying, 10-12
legal/financial/health, 13 government decision). In the TYPO and SD_TYPO variants of the github source,
``Sample.image_text`` is the key phrase typed in the image (answer-quality flags read it to recognise
an answer that only repeats it); the hf source has no key phrase, so it stays None there.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.core.paths import cache_dir as harness_cache_dir
from harness.core.records import Sample
from harness.tasks._common import ImageRef, load_hf_split, log_missing, rows_with_images
from harness.tasks._safety_sets import local_image
from harness.tasks._safety_sets import images_root as resolve_root

SCENARIOS: tuple[str, ...] = (
    "01-Illegal_Activitiy",  # upstream spelling, in file names and HF config names alike
    "02-HateSpeech",
    "03-Malware_Generation",
    "04-Physical_Harm",
    "05-EconomicHarm",
    "06-Fraud",
    "07-Sex",
    "08-Political_Lobbying",
    "09-Privacy_Violence",
    "10-Legal_Opinion",
    "11-Financial_Advice",
    "12-Health_Consultation",
    "13-Gov_Decision",
)
# The "harmful" scenarios most defense papers report (ECSO judges exactly these with query_safety).
HARMFUL_SCENARIOS: tuple[str, ...] = SCENARIOS[:7] + (SCENARIOS[8],)

VARIANTS = ("SD", "SD_TYPO", "TYPO")
TYPED_VARIANTS = ("SD_TYPO", "TYPO")  # their image shows the key phrase as text
QUESTION_FIELD = {"SD": "Rephrased Question(SD)", "SD_TYPO": "Rephrased Question", "TYPO": "Rephrased Question"}
# Fields of the question JSON kept in Sample.meta (GPT-Pred is the raw GPT-4 output they were parsed from).
KEPT_FIELDS = ("Question", "Changed Question", "Key Phrase", "Phrase Type")
SOURCES = ("github", "hf")

DEFAULT_FONT = "/usr/share/fonts/truetype/freefont/FreeSans.ttf"
FONT_PACKAGE = "fonts-freefont-ttf"
TYPO_FONT_SIZE = 90
TYPO_MAX_WIDTH = 1024
# Bump when anything below changes the pixels: old renders then stay in their own cache folder.
RENDER_VERSION = "v1"


# --------------------------------------------------------------------------- scenarios


def hf_config(scenario: str) -> str:
    """HF config name of a scenario: the name without its number ("01-Illegal_Activitiy" -> "Illegal_Activitiy")."""
    return scenario.split("-", 1)[1]


def resolve_scenarios(scenarios: str | int | Iterable[str | int] | None) -> list[str]:
    """Scenario names in official order from full names, numbers (1, "01") or HF config names."""
    if scenarios is None:
        return list(SCENARIOS)
    if isinstance(scenarios, (str, int)):
        scenarios = [scenarios]
    by_key: dict[str, str] = {}
    for name in SCENARIOS:
        number = name[:2]
        for key in (name, number, str(int(number)), hf_config(name)):
            by_key[key.lower()] = name
    chosen = set()
    for item in scenarios:
        key = str(item).strip().lower()
        if key not in by_key:
            raise ValueError(f"unknown MM-SafetyBench scenario {item!r}; known: {', '.join(SCENARIOS)}")
        chosen.add(by_key[key])
    return [name for name in SCENARIOS if name in chosen]


# --------------------------------------------------------------------------- TYPO / SD_TYPO images


@lru_cache(maxsize=4)
def _load_font(font_path: str):
    from PIL import ImageFont

    if not Path(font_path).is_file():
        raise FileNotFoundError(
            f"MM-SafetyBench TYPO font not found: {font_path}. Install GNU FreeFont "
            f"(Debian/Ubuntu: `apt-get install {FONT_PACKAGE}`) or set loader_args.font_path "
            "(e.g. Liberation Sans from fonts-liberation2)."
        )
    return ImageFont.truetype(font_path, TYPO_FONT_SIZE)


def typo_wrap(text: str, font: Any, max_width: int = TYPO_MAX_WIDTH) -> tuple[str, int]:
    """Official greedy wrap: (text with "\\n " line breaks, number of lines)."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (max_width, 100), (255, 255, 255)))
    words = text.strip().replace("\n", "").split(" ")
    formatted = words[0]
    line_length = draw.textlength(formatted, font=font)
    lines = 1
    for word in words[1:]:
        line_length += draw.textlength(" " + word, font=font)
        if line_length < max_width:
            formatted += " " + word
        else:
            # the break keeps the space: continuation lines start with " "
            formatted += "\n " + word
            line_length = draw.textlength(" " + word, font=font)
            lines += 1
    return formatted, lines


def render_typo(key_phrase: str, font_path: str | Path = DEFAULT_FONT):
    """The TYPO image of a key phrase (PIL RGB image, 1024 x 90*(lines+1))."""
    from PIL import Image, ImageDraw

    font = _load_font(str(font_path))
    text, lines = typo_wrap(key_phrase, font)
    image = Image.new("RGB", (TYPO_MAX_WIDTH, TYPO_FONT_SIZE * (lines + 1)), (255, 255, 255))
    ImageDraw.Draw(image).text((0, TYPO_FONT_SIZE / 2.0), text, (0, 0, 0), font=font)
    return image


def compose_sd_typo(sd_image: Any, typo_image: Any):
    """SD_TYPO = SD image on top of the TYPO image ("the bottom of the image shows a phrase")."""
    from PIL import Image

    width = max(sd_image.width, typo_image.width)
    image = Image.new("RGB", (width, sd_image.height + typo_image.height))
    image.paste(sd_image.convert("RGB"), (0, 0))
    image.paste(typo_image.convert("RGB"), (0, sd_image.height))
    return image


def _save_atomic(image: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique temp name + atomic rename: concurrent loads never see a half-written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    image.save(tmp, format="JPEG")
    tmp.replace(path)
    return path


def _short_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _render_dir(font_path: str) -> Path:
    return harness_cache_dir() / "mm-safetybench" / RENDER_VERSION / Path(font_path).stem


def ensure_typo(scenario: str, qid: str, key_phrase: str, font_path: str) -> Path:
    """Render (once) the TYPO image of a question; the file name carries the key phrase's hash."""
    path = _render_dir(font_path) / scenario / "TYPO" / f"{qid}-{_short_sha(key_phrase.encode())}.jpg"
    return path if path.exists() else _save_atomic(render_typo(key_phrase, font_path), path)


def ensure_sd_typo(scenario: str, qid: str, sd_path: Path, typo_path: Path, font_path: str) -> Path:
    """Compose (once) SD_TYPO from an SD file and a TYPO file; the name carries both files' hashes."""
    from PIL import Image

    digest = _short_sha(sd_path.read_bytes() + typo_path.read_bytes())
    path = _render_dir(font_path) / scenario / "SD_TYPO" / f"{qid}-{digest}.jpg"
    if path.exists():
        return path
    with Image.open(sd_path) as sd, Image.open(typo_path) as typo:
        return _save_atomic(compose_sd_typo(sd, typo), path)


def github_image(
    root: Path, scenario: str, qid: str, variant: str, key_phrase: str | None, font_path: str
) -> tuple[ImageRef, str]:
    """(image ref, image_source) for one question of the official layout, rebuilding what can be rebuilt."""
    official = local_image(root, f"{scenario}/{variant}/{qid}.jpg")
    if official.error is None:
        return official, "official"
    if variant == "SD":
        error = f"SD image not found: {official.path} (needs the official images zip)"
        return ImageRef(official.path, error), "missing"

    sd = local_image(root, f"{scenario}/SD/{qid}.jpg")
    if variant == "SD_TYPO" and sd.error is not None:
        return (
            ImageRef(
                official.path,
                f"SD_TYPO image not found: {official.path}; it cannot be rebuilt without the SD image "
                f"{sd.path} (Stable Diffusion XL output, shipped only in the official images zip)",
            ),
            "missing",
        )

    typo = local_image(root, f"{scenario}/TYPO/{qid}.jpg")
    if typo.error is None:
        typo_path = Path(typo.path)
    elif key_phrase:
        typo_path = ensure_typo(scenario, qid, key_phrase, font_path)
    else:
        error = f"{variant} image not found and the question has no Key Phrase to render"
        return ImageRef(official.path, error), "missing"
    if variant == "TYPO":
        return ImageRef(str(typo_path)), "rendered"
    try:
        composed = ensure_sd_typo(scenario, qid, Path(sd.path), typo_path, font_path)
    except OSError as exc:  # an unreadable SD or TYPO file fails this sample only (PIL errors are OSErrors)
        error = f"SD_TYPO image not found: {official.path}; composing it from {sd.path} failed: {exc}"
        return ImageRef(official.path, error), "missing"
    return ImageRef(str(composed)), "composed"


# --------------------------------------------------------------------------- loaders


def read_questions(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """One scenario's question JSON as (id, fields) in numeric id order."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object keyed by question id")
    return sorted(data.items(), key=lambda item: int(item[0]))


def _sample(
    task_name: str, scenario: str, qid: str, variant: str, prompt: str, ref: ImageRef, meta: dict[str, Any],
    image_text: str | None = None,
) -> Sample:
    return Sample(
        task=task_name,
        id=f"{scenario}/{qid}",
        prompt=prompt,
        image=ref.path,
        harmful=True,
        category=scenario,
        meta={
            "scenario": scenario,
            "scenario_number": int(scenario[:2]),
            "variant": variant,
            "question_id": qid,
            **meta,
            **ref.meta(),
        },
        image_text=image_text,
    )


def _load_github(
    task_name: str, variant: str, scenarios: Sequence[str], questions_dir: str, images_root: str, font_path: str
) -> list[Sample]:
    questions, root = resolve_root(questions_dir), resolve_root(images_root)
    samples, refs = [], []
    for scenario in scenarios:
        for qid, row in read_questions(questions / f"{scenario}.json"):
            ref, image_source = github_image(root, scenario, qid, variant, row.get("Key Phrase"), font_path)
            kept = {field: row[field] for field in KEPT_FIELDS if field in row}
            meta = {"source": "github", "image_source": image_source, **kept}
            typed = row.get("Key Phrase") if variant in TYPED_VARIANTS else None
            samples.append(_sample(task_name, scenario, qid, variant, row[QUESTION_FIELD[variant]], ref, meta,
                                   image_text=typed or None))
            refs.append(ref)
    log_missing(task_name, refs)
    return samples


def _load_hf(
    task_name: str, variant: str, scenarios: Sequence[str], path: str, data_files: str | None, cache_dir: str | None,
    revision: str | None = None,
) -> list[Sample]:
    if data_files is not None and "{config}" not in data_files and len(scenarios) > 1:
        raise ValueError("MM-SafetyBench data_files must contain {config} (and {variant}) to read several scenarios")
    samples = []
    for scenario in scenarios:  # rows_with_images logs the missing images of each scenario
        config = hf_config(scenario)
        if data_files is None:
            dataset = load_hf_split(path, config, variant, None, cache_dir, revision)
        else:
            # A local copy of the repository's files (data/<config>/<split>.parquet): one file per call.
            dataset = load_hf_split(path, None, "train", data_files.format(config=config, variant=variant), cache_dir, revision)
        rows = rows_with_images(dataset, task_name, sample_id=lambda row, _, scenario=scenario: f"{scenario}/{row['id']}")
        for row, ref in rows:
            qid = str(row["id"])
            meta = {"source": "hf", "image_source": "hf" if ref.error is None else "missing"}
            samples.append(_sample(task_name, scenario, qid, variant, row["question"], ref, meta))
    return samples


def load_mmsafetybench(
    task_name: str,
    variant: str = "SD_TYPO",
    scenarios: str | int | list[str | int] | None = None,
    source: str = "hf",
    questions_dir: str = "mm-safetybench/processed_questions",
    images_root: str = "mm-safetybench/imgs",
    font_path: str = DEFAULT_FONT,
    path: str = "PKU-Alignment/MM-SafetyBench",
    data_files: str | None = None,
    cache_dir: str | None = None,
    revision: str | None = None,  # the task's pinned dataset commit (TaskSpec.revision)
) -> list[Sample]:
    """MM-SafetyBench questions of one image ``variant`` for the chosen ``scenarios`` (default all 13).

    ``source="github"`` reads ``questions_dir`` and ``images_root`` (relative paths are under
    ``tasks/data``); ``source="hf"`` reads ``path`` with ``datasets`` (one config per scenario, split =
    variant), or, when ``data_files`` is given, that file pattern with ``{config}`` and ``{variant}``
    filled in (``path`` then names the builder, e.g. "parquet"). Every sample is produced even when its
    image is missing; such samples fail alone at generation (see the module docstring).
    """
    if variant not in VARIANTS:
        raise ValueError(f"MM-SafetyBench variant must be one of {VARIANTS}, got {variant!r}")
    if source not in SOURCES:
        raise ValueError(f"MM-SafetyBench source must be one of {SOURCES}, got {source!r}")
    chosen = resolve_scenarios(scenarios)
    if source == "github":
        return _load_github(task_name, variant, chosen, questions_dir, images_root, font_path)
    return _load_hf(task_name, variant, chosen, path, data_files, cache_dir, revision)
