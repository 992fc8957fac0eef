"""Streaming tiled inference: georeferencing, exactness, seams, resume, nodata, TTA, memory."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import array_bounds
from rasters import UTM33N, smooth, write_geotiff
from torch import nn

from rsfm.data.errors import (
    BandMismatchError,
    MissingCRSError,
    NonFiniteError,
    UnreadableRasterError,
)
from rsfm.inference import BlendWindows, TiledPredictor, TileGrid, TileOptions, tile_raster
from rsfm.inference.plot import render_side_by_side
from rsfm.models.smarties import SmartiesEncoder

REPO = Path(__file__).resolve().parents[2]


def conv_net(in_channels: int = 3, out_channels: int = 4, seed: int = 0) -> nn.Module:
    """Three 3x3 convolutions: receptive field 7 px (radius 3)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, out_channels, 3, padding=1),
    ).eval()


def standardise(image: torch.Tensor) -> torch.Tensor:
    """The fields written by ``rasters.smooth`` are about 1000 +- 300."""
    return (image - 1000.0) / 300.0


def options(**overrides: object) -> TileOptions:
    """Small tiles, quiet, values output unless overridden."""
    defaults: dict = dict(tile_size=32, overlap=8, batch_size=4, output="values", progress=False)
    return TileOptions(**{**defaults, **overrides})


def read(path: Path) -> np.ndarray:
    """All bands of a raster."""
    with rasterio.open(path) as src:
        return src.read()


@pytest.fixture()
def scene(tmp_path: Path) -> Path:
    """3 bands, 70 x 90 px (not multiples of the stride: the last tiles are shifted)."""
    return write_geotiff(tmp_path / "scene.tif", smooth(3, 70, 90, seed=3))


# ---------------------------------------------------------------------- grid and windows


def test_grid_covers_raster_with_shifted_edge_tiles() -> None:
    grid = TileGrid(70, 90, tile_size=32, overlap=8)
    assert grid.row_starts == [0, 24, 38] and grid.col_starts == [0, 24, 48, 58]
    cover = np.zeros((70, 90), dtype=int)
    for r in range(grid.n_rows):
        for tile in grid.row_tiles(r):
            assert (tile.height, tile.width) == (32, 32)
            cover[tile.row : tile.row + 32, tile.col : tile.col + 32] += 1
    assert cover.min() == 1 and cover.max() == 4
    small = TileGrid(20, 50, tile_size=32, overlap=8)
    assert small.row_starts == [0] and small.tile(0, 0).height == 20
    reaching = [grid.first_row_reaching(row) for row in (0, 31, 32, 55, 56, 69, 70)]
    assert reaching == [0, 0, 1, 1, 2, 2, 3]


def test_blend_windows_partition_and_edges() -> None:
    grid = TileGrid(70, 90, tile_size=32, overlap=8)
    total = {kind: np.zeros((70, 90)) for kind in ("none", "hann")}
    for kind, acc in total.items():
        windows = BlendWindows(grid, kind)
        for r in range(grid.n_rows):
            for tile in grid.row_tiles(r):
                acc[tile.row : tile.row + 32, tile.col : tile.col + 32] += windows.window(tile)
    np.testing.assert_array_equal(total["none"], 1.0)  # hard cuts: exactly one tile per pixel
    assert total["hann"].min() > 0.1  # never near zero, raster edges included
    corner = BlendWindows(grid, "hann").window(grid.tile(0, 0))
    assert corner[0, 0] == pytest.approx(1.0, abs=1e-3)  # raster edge keeps full weight
    assert corner[-1, -1] < 0.01  # interior side tapers
    sr = BlendWindows(grid, "hann", scale=2).window(grid.tile(1, 1))
    assert sr.shape == (64, 64) and sr.min() > 0


# ---------------------------------------------------------------------- georeferencing


def test_output_georeferencing_and_values(scene: Path, tmp_path: Path) -> None:
    out = TiledPredictor(lambda x: x, options(), normalize=standardise).run(
        scene, tmp_path / "same.tif"
    )
    with rasterio.open(scene) as src, rasterio.open(tmp_path / "same.tif") as dst:
        assert dst.crs == src.crs and dst.crs.to_string() == UTM33N
        assert dst.transform == src.transform and dst.shape == src.shape
        assert dst.profile["tiled"] and dst.profile["compress"] == "deflate"
        assert dst.descriptions == ("value_0", "value_1", "value_2") and np.isnan(dst.nodata)
        expected = standardise(torch.from_numpy(src.read())).numpy()
        np.testing.assert_allclose(dst.read(), expected, atol=1e-5)  # identity model, blended
    assert out.tiles_total == 12 and out.tiles_predicted == 12

    def upsample(x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    TiledPredictor(upsample, options(scale=2)).run(scene, tmp_path / "sr.tif")
    with rasterio.open(scene) as src, rasterio.open(tmp_path / "sr.tif") as dst:
        assert dst.crs == src.crs and dst.shape == (140, 180)
        assert dst.res == (5.0, 5.0) and src.res == (10.0, 10.0)
        assert dst.bounds == src.bounds
        assert array_bounds(140, 180, dst.transform) == array_bounds(70, 90, src.transform)
        expected = src.read().repeat(2, axis=1).repeat(2, axis=2)
        np.testing.assert_allclose(dst.read(), expected, rtol=1e-6)


def test_raster_smaller_than_a_tile_is_reflection_padded(tmp_path: Path) -> None:
    data = smooth(3, 20, 50, seed=4)
    source = write_geotiff(tmp_path / "small.tif", data)
    shapes = []

    def pointwise(image: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(image.shape))
        return image.mean(dim=1, keepdim=True) * 2.0

    opts = options(tile_size=32, overlap=8, band_names=("mean",))  # named: no probe call
    report = TiledPredictor(pointwise, opts).run(source, tmp_path / "small_out.tif")
    assert shapes == [(2, 3, 32, 32)] and report.buffer_rows == 20  # one row of 2 tiles
    with rasterio.open(tmp_path / "small_out.tif") as dst:
        assert dst.descriptions == ("mean",) and dst.shape == (20, 50)
    np.testing.assert_allclose(read(tmp_path / "small_out.tif")[0], data.mean(0) * 2, rtol=1e-6)


@pytest.mark.parametrize("cog", [True, False])
def test_overviews_and_layout(tmp_path: Path, cog: bool) -> None:
    source = write_geotiff(tmp_path / "ov.tif", smooth(3, 300, 300, seed=7))

    def classify(image: torch.Tensor) -> torch.Tensor:  # 3 classes from the first band
        return nn.functional.one_hot((image[:, 0] > 1000).long() + (image[:, 0] > 1200).long(), 3)

    opts = options(tile_size=64, overlap=16, output="classes", num_classes=3, cog=cog,
                   block_size=128, overviews=True)  # fmt: skip
    TiledPredictor(lambda x: classify(x).permute(0, 3, 1, 2).float(), opts).run(
        source, tmp_path / "ov_out.tif"
    )
    with rasterio.open(tmp_path / "ov_out.tif") as dst:
        assert dst.overviews(1) == [2, 4]  # until the smallest fits one 128-px block
        assert dst.block_shapes[0] == (128, 128)
        layout = dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
        assert (layout == "COG") if cog else (layout != "COG")
        full, reduced = dst.read(1), dst.read(1, out_shape=(75, 75))  # overview: nearest
    assert set(np.unique(full)) == {0, 1, 2} and set(np.unique(reduced)) <= {0, 1, 2}
    data = read(source)[0]
    np.testing.assert_array_equal(full, (data > 1000).astype(int) + (data > 1200))


# ---------------------------------------------------------------------- exactness and seams


@pytest.mark.parametrize(("blend", "margin"), [("none", 0), ("hann", 3), ("cosine", 3)])
def test_conv_model_tiled_equals_whole_image(
    scene: Path, tmp_path: Path, blend: str, margin: int
) -> None:
    """Receptive radius 3 <= overlap / 2: hard cuts are exact; blends are exact once the 3 px
    that saw the tile's zero padding get weight 0 (``margin=3``)."""
    net = conv_net()
    whole = net(standardise(torch.from_numpy(read(scene)))[None])[0].detach().numpy()
    path = tmp_path / f"{blend}.tif"
    predictor = TiledPredictor(net, options(blend=blend, margin=margin), normalize=standardise)
    predictor.run(scene, path)
    np.testing.assert_allclose(read(path), whole, atol=1e-5, rtol=0)


def test_hann_without_margin_is_not_exact(scene: Path, tmp_path: Path) -> None:
    """Why ``none``/``margin``: Hann weights are tiny but not zero where the tile was padded."""
    net = conv_net()
    whole = net(standardise(torch.from_numpy(read(scene)))[None])[0].detach().numpy()
    TiledPredictor(net, options(blend="hann"), normalize=standardise).run(scene, tmp_path / "h.tif")
    error = np.abs(read(tmp_path / "h.tif") - whole)
    assert error.max() > 1e-4 and error.mean() < 1e-3


def seam_ratio(output: np.ndarray, grid: TileGrid) -> float:
    """Mean |gradient| across the tile borders (the cut lines) over the mean elsewhere."""
    rows, cols, size = grid.row_starts, grid.col_starts, grid.tile_size
    cuts_r = [(rows[i] + rows[i - 1] + size) // 2 for i in range(1, len(rows))]
    cuts_c = [(cols[i] + cols[i - 1] + size) // 2 for i in range(1, len(cols))]
    grad_x = np.abs(np.diff(output, axis=2)).mean(0)  # [H, W-1]: column j is between j and j+1
    grad_y = np.abs(np.diff(output, axis=1)).mean(0)
    on_x = np.isin(np.arange(grad_x.shape[1]) + 1, cuts_c)
    on_y = np.isin(np.arange(grad_y.shape[0]) + 1, cuts_r)
    seam = np.concatenate([grad_x[:, on_x].ravel(), grad_y[on_y].ravel()]).mean()
    inside = np.concatenate([grad_x[:, ~on_x].ravel(), grad_y[~on_y].ravel()]).mean()
    return float(seam / inside)


def test_seams_vanish_with_hann_for_a_vit(tmp_path: Path) -> None:
    """A ViT sees each tile as a whole (attention, per-tile positions): its tiles disagree."""
    source = write_geotiff(tmp_path / "vit_in.tif", smooth(3, 160, 160, seed=1))
    torch.manual_seed(0)
    encoder = SmartiesEncoder(img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2).eval()
    head = nn.Conv2d(32, 2, 1)
    wavelengths = torch.tensor([665.0, 560.0, 490.0])

    def vit(image: torch.Tensor) -> torch.Tensor:
        features = head(encoder.forward_spatial(image, wavelengths))
        return nn.functional.interpolate(features, scale_factor=8, mode="bilinear")

    grid = TileGrid(160, 160, 64, 32)
    ratios = {}
    for blend in ("none", "hann"):
        path = tmp_path / f"vit_{blend}.tif"
        TiledPredictor(vit, options(tile_size=64, overlap=32, blend=blend), standardise).run(
            source, path
        )
        ratios[blend] = seam_ratio(read(path), grid)
    assert ratios["hann"] < 1.2
    assert ratios["none"] > 1.6  # the metric does catch seams


# ---------------------------------------------------------------------- resume


class Boom(RuntimeError):
    """Raised by the failing model."""


def failing_after(net: nn.Module, batches: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``net``, raising :class:`Boom` from its ``batches + 1``-th call on."""
    calls = {"n": 0}

    def predict(image: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > batches:
            raise Boom("killed")
        return net(image)

    return predict


def test_kill_then_resume_is_bit_identical(tmp_path: Path) -> None:
    source = write_geotiff(tmp_path / "big.tif", smooth(3, 150, 60, seed=5))
    net = conv_net(out_channels=3)
    opts = options(
        output="probabilities",
        softmax=True,
        num_classes=3,
        checkpoint_rows=32,
        batch_size=2,
        resume_key="net0",
    )
    reference = tmp_path / "reference.tif"
    full = TiledPredictor(net, opts, standardise).run(source, reference)

    target = tmp_path / "resumed.tif"
    journal = target.with_name(target.name + ".partial.json")
    with pytest.raises(Boom):
        TiledPredictor(failing_after(net, 7), opts, standardise).run(source, target)
    assert not target.exists() and journal.exists()
    rows_done = json.loads(journal.read_text())["rows_done"]
    assert 0 < rows_done < 150

    resumed = TiledPredictor(net, opts, standardise).run(source, target)
    assert target.read_bytes() == reference.read_bytes()
    assert resumed.resumed_from_row == rows_done == 96
    assert resumed.tiles_resumed == 8  # batch [8, 10) starts mid tile row (3 tiles per row)
    assert resumed.tiles_predicted < full.tiles_predicted
    assert not journal.exists() and not target.with_name(target.name + ".partial.tif").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif", "reference.tif", target.name]

    # A journal of another model (resume_key) is not reused: the run starts over.
    with pytest.raises(Boom):
        TiledPredictor(failing_after(net, 5), opts, standardise).run(source, target)
    other = TiledPredictor(net, dataclasses.replace(opts, resume_key="net1"), standardise)
    assert other.run(source, target).resumed_from_row == 0
    assert target.read_bytes() == reference.read_bytes()


def test_sigkill_then_resume_is_bit_identical(tmp_path: Path) -> None:
    """A real SIGKILL (no cleanup at all) mid-run, then a resume in this process."""
    source = write_geotiff(tmp_path / "in.tif", smooth(3, 150, 60, seed=6))
    script = textwrap.dedent(
        f"""
        import os, signal, sys, torch
        sys.path[:0] = [{str(REPO / "tests" / "inference")!r}, {str(REPO / "tests")!r}]
        from test_tiled_inference import conv_net, options, standardise
        from rsfm.inference import TiledPredictor
        net, calls = conv_net(out_channels=3), [0]
        def predict(x):
            calls[0] += 1
            if calls[0] > 5:
                os.kill(os.getpid(), signal.SIGKILL)
            return net(x)
        opts = options(output="classes", num_classes=3, checkpoint_rows=32, batch_size=2)
        target = {str(tmp_path / "out.tif")!r}
        TiledPredictor(predict, opts, standardise).run({str(source)!r}, target)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    assert not (tmp_path / "out.tif").exists()
    net = conv_net(out_channels=3)
    opts = options(output="classes", num_classes=3, checkpoint_rows=32, batch_size=2)
    resumed = TiledPredictor(net, opts, standardise).run(source, tmp_path / "out.tif")
    assert resumed.resumed_from_row > 0
    TiledPredictor(net, opts, standardise).run(source, tmp_path / "ref.tif")
    assert (tmp_path / "out.tif").read_bytes() == (tmp_path / "ref.tif").read_bytes()


# ---------------------------------------------------------------------- nodata, classes, TTA


def test_nodata_tiles_skipped_and_written_as_nodata(tmp_path: Path) -> None:
    data = smooth(2, 70, 90, seed=2).round().astype("uint16")
    data[:, :40, :60] = 0  # tiles (0, 0) and (0, 1) are entirely nodata
    data[1, 60:, 80:] = 0  # nodata in one band only still marks the pixel
    source = write_geotiff(tmp_path / "nd.tif", data, nodata=0)
    seen, zeros = [], []

    def model(image: torch.Tensor) -> torch.Tensor:
        seen.append(image.shape[0])
        zeros.append(int((image == 0).all(dim=1).sum()))  # nodata pixels the model was shown
        return image.sum(dim=1, keepdim=True).repeat(1, 3, 1, 1).softmax(dim=1)

    opts = options(output="classes", num_classes=3)
    report = TiledPredictor(model, opts, normalize=lambda x: x + 5.0).run(
        source, tmp_path / "nd_out.tif"
    )
    assert report.tiles_skipped_nodata == 2 and sum(seen) == 12 - 2
    grid, invalid = TileGrid(70, 90, 32, 8), (data == 0).any(axis=0)
    shown = [invalid[t.row : t.row + 32, t.col : t.col + 32] for t in
             (grid.tile(r, c) for r in range(3) for c in range(4))]  # fmt: skip
    assert sum(zeros) == sum(int(m.sum()) for m in shown if not m.all()) > 0  # 0 after normalize
    with rasterio.open(tmp_path / "nd_out.tif") as dst:
        assert dst.nodata == 255 and dst.dtypes[0] == "uint8" and dst.descriptions == ("class",)
        classes = dst.read(1)
    np.testing.assert_array_equal(classes == 255, invalid)
    assert set(np.unique(classes[~invalid])) <= {0, 1, 2}


def test_classes_are_argmax_of_blended_probabilities(scene: Path, tmp_path: Path) -> None:
    net = conv_net(out_channels=5)
    common = dict(softmax=True, num_classes=5)
    TiledPredictor(net, options(output="probabilities", **common), standardise).run(
        scene, tmp_path / "p.tif"
    )
    TiledPredictor(net, options(output="classes", **common), standardise).run(
        scene, tmp_path / "c.tif"
    )
    probabilities, classes = read(tmp_path / "p.tif"), read(tmp_path / "c.tif")
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(classes[0], probabilities.argmax(axis=0))
    assert len(np.unique(classes)) > 1


def test_tta_flips(scene: Path, tmp_path: Path) -> None:
    """A flip-equivariant model (symmetric kernel) is unchanged by TTA; a generic one is not."""
    symmetric = nn.Conv2d(3, 2, 3, padding=1, bias=False)
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    with torch.no_grad():
        symmetric.weight.copy_(kernel * torch.randn(2, 3, 1, 1))
    for name, model in (("sym", symmetric), ("net", conv_net(out_channels=2))):
        for tta in (False, True):
            opts = options(tta_flips=tta, blend="none")
            TiledPredictor(model, opts, standardise).run(scene, tmp_path / f"{name}_{tta}.tif")
    np.testing.assert_allclose(
        read(tmp_path / "sym_True.tif"), read(tmp_path / "sym_False.tif"), atol=1e-5
    )
    assert np.abs(read(tmp_path / "net_True.tif") - read(tmp_path / "net_False.tif")).max() > 1e-3


# ---------------------------------------------------------------------- memory bound


@pytest.mark.parametrize("scale", [1, 2])
def test_buffered_rows_do_not_grow_with_height(tmp_path: Path, scale: int) -> None:
    def upsample(x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x[:, :1], scale_factor=scale, mode="nearest")

    buffered = []
    for height in (40, 400):
        source = write_geotiff(tmp_path / f"h{height}.tif", smooth(1, height, 48, seed=height))
        report = TiledPredictor(upsample, options(scale=scale)).run(
            source, tmp_path / f"h{height}_out.tif"
        )
        buffered.append(report.max_buffered_rows)
        assert report.max_buffered_rows <= report.buffer_rows == 32 * scale
    assert buffered[0] == buffered[1] == 32 * scale


# ---------------------------------------------------------------------- errors


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    good = write_geotiff(tmp_path / "good.tif", smooth(3, 40, 40))
    no_crs = write_geotiff(tmp_path / "no_crs.tif", smooth(3, 40, 40), crs=None)
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00 definitely not a tiff")
    nan_data = smooth(3, 40, 40)
    nan_data[1, 30, 30] = np.nan
    with_nan = write_geotiff(tmp_path / "nan.tif", nan_data)
    net = conv_net()
    cases = [
        (no_crs, None, MissingCRSError),
        (garbage, None, UnreadableRasterError),
        (tmp_path / "missing.tif", None, UnreadableRasterError),
        (good, [1, 2, 4], BandMismatchError),
        (with_nan, None, NonFiniteError),
    ]
    for path, bands, error in cases:
        out = tmp_path / f"{path.stem}_out.tif"
        with pytest.raises(error, match=path.name):
            tile_raster(net, path, out, bands=bands, tile_size=32, overlap=8, progress=False)
        assert not out.exists()
    # declared NaN nodata is fine: those pixels are written as nodata
    nan_nodata = write_geotiff(tmp_path / "nan_nd.tif", nan_data, nodata=float("nan"))
    tile_raster(net, nan_nodata, tmp_path / "ok.tif", tile_size=32, overlap=8, progress=False)
    result = read(tmp_path / "ok.tif")
    assert np.isnan(result[:, 30, 30]).all() and np.isfinite(result[:, 10, 10]).all()


def test_truncated_file_is_unreadable(tmp_path: Path) -> None:
    data = smooth(3, 64, 64).astype("float32")
    path = write_geotiff(tmp_path / "trunc.tif", data, tiled=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UnreadableRasterError, match="trunc.tif"):
        tile_raster(conv_net(), path, tmp_path / "t_out.tif", tile_size=32, overlap=8,
                    progress=False, resume=False)  # fmt: skip
    assert not list(tmp_path.glob("t_out.tif*"))


# ---------------------------------------------------------------------- plot


def test_render_side_by_side(scene: Path, tmp_path: Path) -> None:
    net = conv_net(out_channels=3)
    classes = tmp_path / "classes.tif"
    tile_raster(net, scene, classes, output="classes", num_classes=3, softmax=True,
                band_names=["water", "forest", "urban"], tile_size=32, overlap=8,
                normalize=standardise, progress=False)  # fmt: skip
    png = render_side_by_side(
        scene, classes, tmp_path / "side.png", rgb_bands=(1, 2, 3),
        class_colors=[(0, 100, 200), (0, 100, 0), (250, 0, 0)], max_size=32,
    )  # fmt: skip
    image = plt_read(png)
    assert image.shape[0] > 100 and image.shape[1] > 2 * image.shape[0] - 200
    assert image[..., :3].std() > 0.05  # not blank
    values = tmp_path / "values.tif"
    tile_raster(net, scene, values, output="values", tile_size=32, overlap=8, progress=False)
    assert render_side_by_side(scene, values, tmp_path / "values.png").stat().st_size > 1000


def plt_read(path: Path) -> np.ndarray:
    """A PNG as an RGBA float array."""
    from matplotlib.image import imread

    return imread(path)
