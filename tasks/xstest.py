"""XSTest (Röttger et al., NAACL 2024): 250 safe prompts that look unsafe + 200 unsafe contrasts, text only."""

from __future__ import annotations

import csv

from harness.core.records import Sample
from harness.tasks._common import data_path


def load_xstest(task_name: str, csv_path: str = "xstest/xstest_prompts.csv") -> list[Sample]:
    """One sample per CSV row, in file order; ``harmful`` is the upstream label == "unsafe"."""
    with open(data_path(csv_path), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    samples = []
    for row in rows:
        if row["label"] not in ("safe", "unsafe"):
            raise ValueError(f"xstest row {row['id']}: unexpected label {row['label']!r}")
        samples.append(
            Sample(
                task=task_name,
                id=row["id"],
                prompt=row["prompt"],
                harmful=row["label"] == "unsafe",
                category=row["type"],
                meta={"label": row["label"], "focus": row["focus"], "note": row["note"]},
            )
        )
    return samples
