"""Parquet manifests (pyarrow is a declared dependency): captions read like JSONL and CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from rsfm.data.captions import CaptionDataset, read_caption_manifest


def _images(folder: Path) -> list[str]:
    names = []
    for index, colour in enumerate([(200, 30, 30), (20, 160, 40)]):
        name = f"img{index}.png"
        Image.fromarray(np.full((8, 8, 3), colour, dtype=np.uint8)).save(folder / name)
        names.append(name)
    return names


def test_parquet_csv_and_jsonl_manifests_give_the_same_records(tmp_path: Path) -> None:
    names = _images(tmp_path)
    frame = pd.DataFrame(
        {
            "image": names,
            "caption": ["a red roof in a dense town", "green fields beside a small river"],
            "gsd": [0.5, 10.0],
            "label": ["residential", "farmland"],
        }
    )
    frame.to_parquet(tmp_path / "m.parquet")
    frame.to_csv(tmp_path / "m.csv", index=False)
    frame.to_json(tmp_path / "m.jsonl", orient="records", lines=True)
    parsed = {
        suffix: read_caption_manifest(tmp_path / f"m.{suffix}")
        for suffix in ("parquet", "csv", "jsonl")
    }
    for records in parsed.values():
        assert [r.image.name for r in records] == names
        assert [list(r.captions) for r in records] == [[c] for c in frame["caption"]]
        assert [r.gsd for r in records] == [0.5, 10.0]
        assert [r.label for r in records] == ["residential", "farmland"]

    sample = CaptionDataset(tmp_path / "m.parquet", caption_sampling="first")[1]
    assert sample["caption"] == "green fields beside a small river" and sample["gsd"] == 10.0
    np.testing.assert_allclose(sample["image"][:, 0, 0].numpy(), np.array([20, 160, 40]) / 255)
