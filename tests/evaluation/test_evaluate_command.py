"""``rsfm evaluate`` end to end on a small catalogue dataset the test registers and writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rsfm.cli import main
from rsfm.data.catalogue import DatasetInfo, chip_sample, register_dataset
from rsfm.data.catalogue.base import region_split
from rsfm.sensors import get_sensor

TOY = DatasetInfo(
    name="toy_water",
    title="toy water scene for the evaluate test",
    folder="toy_water",
    task="segmentation",
    sensors=("sentinel2_l1c",),
    class_names=("not water", "water"),
    split="region_split of one 64x128 scene, 32 px chips",
)


@register_dataset(TOY)
def _load_toy(folder: Path, split: str) -> list[dict]:
    scene = np.load(folder / "scene.npz")
    region = region_split(64, 128, split)
    out = []
    for row in range(region.row0, region.row1 - 15, 16):
        for col in range(region.col0, region.col1 - 15, 16):
            window = (slice(None), slice(row, row + 16), slice(col, col + 16))
            out.append(
                chip_sample(
                    scene["image"][window], "sentinel2_l1c", sample_id=f"toy:{row}:{col}",
                    mask=scene["mask"][window[1:]],
                )
            )  # fmt: skip
    return out


def _write_scene(folder: Path) -> None:
    """Water (green 900, NIR 200) in stripes of land (green 700, NIR 3000), with noise."""
    rng = np.random.default_rng(0)
    sensor = get_sensor("sentinel2_l1c")
    mask = np.zeros((64, 128), dtype=np.int64)
    mask[:, (np.arange(128) // 8) % 3 == 0] = 1
    image = np.where(mask[None] == 1, 300.0, 1500.0) * np.ones((len(sensor), 1, 1))
    green, nir = sensor.band_names.index("B03"), sensor.band_names.index("B08")
    image[green] = np.where(mask == 1, 900.0, 700.0)
    image[nir] = np.where(mask == 1, 200.0, 3000.0)
    image += rng.normal(0, 60, image.shape)
    folder.mkdir(parents=True)
    np.savez(folder / "scene.npz", image=image.astype(np.float32), mask=mask)


def test_evaluate_writes_a_table_with_baselines(tmp_path: Path, capsys) -> None:
    _write_scene(tmp_path / "data" / "toy_water")
    out = tmp_path / "out"
    code = main(
        [
            "evaluate", "--encoder", "random:smarties_tiny", "--dataset", "toy_water",
            "--seeds", "0", "1", "--data-root", str(tmp_path / "data"), "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    record = json.loads((out / "results.json").read_text())
    rows = {(r["encoder"], r["protocol"], r["metric"]): r for r in record["summary"]}
    assert record["encoders"] == ["random:smarties_tiny", "raw", "ndwi", "mf"]
    # The spectra separate the classes: the raw baseline, the NDWI threshold and the matched
    # filter are near perfect.
    assert rows[("raw", "linear", "water_IoU")]["mean"] > 0.95
    assert rows[("ndwi", "threshold", "water_IoU")]["mean"] > 0.95
    assert rows[("mf", "matched_filter", "water_IoU")]["mean"] > 0.95
    assert rows[("mf", "matched_filter", "mIoU")]["n_seeds"] == 1  # deterministic: one seed
    random_row = rows[("random:smarties_tiny", "linear", "mIoU")]
    # Even a random encoder's features separate these spectra linearly (measured 1.0 on both
    # seeds); the majority class ("not water" everywhere) scores mIoU (2/3) / 2 = 1/3.
    assert random_row["n_seeds"] == 2 and random_row["mean"] > 0.9
    assert rows[("raw", "knn", "mIoU")]["n_seeds"] == 1  # deterministic: one seed
    table = (out / "results.md").read_text()
    assert "`raw`" in table and "### toy_water" in table and "| linear mIoU |" in table
    assert str(out / "results.md") in capsys.readouterr().out.splitlines()[-1]


def test_evaluate_lists_and_refuses_without_dataset(capsys) -> None:
    assert main(["evaluate", "--list"]) == 0
    assert "sen1floods11" in capsys.readouterr().out
    assert main(["evaluate", "--encoder", "raw"]) == 2
    assert "--dataset" in capsys.readouterr().err


@pytest.mark.shared_data
def test_evaluate_on_sen1floods11_beats_chance(shared_data, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["evaluate", "--dataset", "sen1floods11", "--protocol", "linear", "--seeds", "0"]
    assert main([*argv, "--data-root", str(shared_data), "--out", str(out)]) == 0
    rows = {
        (r["encoder"], r["metric"]): r["mean"]
        for r in json.loads((out / "results.json").read_text())["summary"]
    }
    assert rows[("raw", "water_IoU")] > 0.7 and rows[("ndwi", "water_IoU")] > 0.7
    assert rows[("mf", "water_IoU")] > 0.5


def test_predict_scores_a_hub_segmenter_with_its_own_card(tmp_path: Path) -> None:
    """A (random) hub segmenter scored as a user would run it: the scores equal those computed
    here by hand from its logits on chips normalised with the card's statistics."""
    import torch

    from rsfm.band_stats import BandStats
    from rsfm.data.catalogue import load_dataset
    from rsfm.evaluation.protocols import score_segmenter
    from rsfm.hub import push
    from rsfm.models.registry import create_model

    _write_scene(tmp_path / "data" / "toy_water")
    test = load_dataset("toy_water", "test", tmp_path / "data")
    sensor = get_sensor("sentinel2_l1c")
    stats = BandStats(
        band_names=sensor.band_names, wavelengths=sensor.wavelengths.tolist(),
        low=[0.0] * 13, high=[1e4] * 13, mean=[0.0] * 13, std=[1000.0] * 13,
        sensor="sentinel2_l1c",
    )  # fmt: skip
    torch.manual_seed(0)
    model = create_model("smarties_tiny_seg_linear", num_outputs=2)
    card = {"class_names": ["not water", "water"], "normalization": {"sentinel2_l1c": stats}}
    push(model, "toy-seg", "1.0.0", hub=tmp_path / "hub", card=card)
    scores = score_segmenter("toy-seg@1.0.0", test, hub=str(tmp_path / "hub"))
    assert set(scores) == {"mIoU", "OA", "water_IoU"}
    # By hand: the card's statistics (clip to [0, 1e4], divide by 1000, never the dataset's),
    # the model's argmax on each whole 16 px chip, the confusion matrix of labelled pixels.
    matrix = np.zeros((2, 2), dtype=np.int64)
    with torch.no_grad():
        for sample in test.samples:
            assert sample["image"].shape[-2:] == (16, 16)  # a multiple of the patch: no padding
            image = (sample["image"].clamp(0.0, 1e4) / 1000.0).masked_fill(~sample["valid"], 0.0)
            pred = model.eval()(image[None], sample["wavelengths"])[0].argmax(0)
            keep = sample["mask"] != -1
            np.add.at(matrix, (sample["mask"][keep].numpy(), pred[keep].numpy()), 1)
    hits = np.diag(matrix)
    iou = hits / (matrix.sum(0) + matrix.sum(1) - hits)
    assert scores["OA"] == pytest.approx(hits.sum() / matrix.sum(), abs=1e-9)
    assert scores["water_IoU"] == pytest.approx(iou[1], abs=1e-9)
    assert scores["mIoU"] == pytest.approx(iou.mean(), abs=1e-9), (scores, matrix)
    card["class_names"] = ["land", "sea"]
    push(model, "toy-seg", "1.0.1", hub=tmp_path / "hub", card=card)
    with pytest.raises(ValueError, match="labelled"):
        score_segmenter("toy-seg@1.0.1", test, hub=str(tmp_path / "hub"))
    del card["normalization"]["sentinel2_l1c"]
    card["class_names"] = ["not water", "water"]
    push(model, "toy-seg", "1.0.2", hub=tmp_path / "hub", card=card)
    with pytest.raises(ValueError, match="no normalisation for sentinel2_l1c"):
        score_segmenter("toy-seg@1.0.2", test, hub=str(tmp_path / "hub"))
    assert torch.is_tensor(test.samples[0]["image"])
