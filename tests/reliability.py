"""Figures that reliability tests measure, collected for docs/reliability.md.

When RAGBOT_RELIABILITY_REPORT names a file, every `record()` appends one JSON line to it;
benchmarks/reliability_report.py runs `pytest -m reliability` that way and renders the table.
"""

from __future__ import annotations

import json
import os
import resource
from typing import Any


def peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def record(scenario: str, checked: str, **figures: Any) -> None:
    path = os.environ.get("RAGBOT_RELIABILITY_REPORT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"scenario": scenario, "checked": checked, "figures": figures}) + "\n")
