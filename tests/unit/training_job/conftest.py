"""Fixtures for the training job's unit tests: small generated image datasets in collector layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.support.images import noisy_jpeg

COLORS = [(200, 40, 40), (40, 40, 200), (40, 180, 40), (200, 200, 40)]


def write_images(folder: Path, label: str, n: int, color_index: int, seed: int = 0) -> list[dict]:
    """Write n images named like the collector does ({label}-{sha12}.jpg); return their manifest rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        data = noisy_jpeg(COLORS[color_index % len(COLORS)], seed * 1000 + color_index * 100 + i)
        sha = hashlib.sha256(data).hexdigest()
        (folder / f"{label}-{sha[:12]}.jpg").write_bytes(data)
        rows.append({"label": label, "sha256": sha, "bytes": len(data), "width": 64, "height": 64})
    return rows


@pytest.fixture
def make_dataset(tmp_path):
    """Build a dataset: make_dataset({"cats": 5, "dogs": 5}, split_folders=False, manifest=None) -> root."""

    def build(counts: dict[str, int | tuple[int, int]], manifest: list[dict] | None = None,
              name: str = "ds") -> Path:
        root = tmp_path / name
        root.mkdir()
        for index, (label, count) in enumerate(counts.items()):
            if isinstance(count, tuple):
                write_images(root / "train" / label, label, count[0], index, seed=1)
                write_images(root / "valid" / label, label, count[1], index, seed=2)
            else:
                write_images(root / label, label, count, index)
        if manifest is not None:
            lines = [json.dumps(row, ensure_ascii=False) for row in manifest]
            (root / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return root

    return build

