"""Model hub: push / pull / load round trips, checkpoints, integrity, names, versions, CLI."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors import safe_open
from torch import nn

import rsfm.hub as hub
from rsfm.data.datamodules.pretrain import GeoDataModule
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.hub.card import BandInfo
from rsfm.hub.commands import hub_main
from rsfm.hub.entry import ENTRY_FILES, EntryRef, next_version
from rsfm.models.registry import create_model
from rsfm.models.smarties import SmartiesEncoder, SmartiesMAE
from rsfm.sensors import get_sensor
from rsfm.tasks.mae import MAEPretrainTask

TINY_WORLD = SyntheticWorldConfig(seed=0, n_scenes=3, scene_size_m=960)
S2_WAVELENGTHS = torch.from_numpy(get_sensor("sentinel2_l1c").wavelengths)


def _tiny(seed: int = 0) -> SmartiesMAE:
    torch.manual_seed(seed)
    return create_model("smarties_tiny")


def _image() -> torch.Tensor:
    return torch.randn(2, 13, 32, 32, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def _mae_outputs(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    out = model(_image(), S2_WAVELENGTHS, generator=torch.Generator().manual_seed(7))
    return out["loss"], out["pred"]


@torch.no_grad()
def _encoder_outputs(model: nn.Module) -> torch.Tensor:
    return model(_image(), S2_WAVELENGTHS)


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    position = len(data) // 2 if offset is None else offset
    data[position] ^= 0x01
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- round trips
def test_push_pull_load_is_bit_identical_for_mae_and_encoder(tmp_path: Path) -> None:
    model = _tiny().eval()
    source, dest = tmp_path / "source", tmp_path / "dest"
    assert hub.push(model, "mae", "1.0", source).key == "mae@1.0"
    assert hub.push(model, "mae-enc", "1.0", source, component="encoder").key == "mae-enc@1.0"
    assert hub.pull("mae", source, dest).key == "mae@1.0"
    assert hub.pull("mae-enc@1.0", f"file://{source}", dest).key == "mae-enc@1.0"

    loaded = hub.load("mae", dest)
    assert type(loaded) is SmartiesMAE and not loaded.training
    expected_loss, expected_pred = _mae_outputs(model)
    loss, pred = _mae_outputs(loaded)
    assert pred.shape == (2, 16, 13, 64) and torch.equal(pred, expected_pred)
    assert torch.equal(loss, expected_loss) and loss.item() > 0

    encoder = hub.load("mae-enc@1.0", dest)
    assert type(encoder) is SmartiesEncoder
    tokens = _encoder_outputs(encoder)
    assert tokens.shape == (2, 17, 64)
    assert torch.equal(tokens, _encoder_outputs(model.encoder))
    assert encoder.rsfm_card.architecture.component == "encoder"
    # Pulling copies bytes: destination hashes equal the source's.
    src_index = json.loads((source / "index.json").read_text())["entries"]
    dst_index = json.loads((dest / "index.json").read_text())["entries"]
    assert dst_index["mae@1.0"]["files"] == src_index["mae@1.0"]["files"]
    assert dst_index["mae@1.0"]["created"] == src_index["mae@1.0"]["created"]
    assert hub.pull("mae", source, dest).key == "mae@1.0"  # identical entry: a no-op


def test_entry_layout_config_and_card(tmp_path: Path) -> None:
    model = _tiny()
    hub.push(model, "tiny", "0.1", tmp_path, card={"sensors": ["sentinel2_l1c"], "tags": ["x"]})
    entry = tmp_path / "tiny@0.1"
    assert sorted(p.name for p in entry.iterdir()) == sorted(ENTRY_FILES)
    config = json.loads((entry / "config.json").read_text())
    assert set(config) == {"name", "class_path", "init_args", "rsfm_version", "format_version"}
    assert config["class_path"] == "rsfm.models.smarties.SmartiesMAE"
    assert config["name"] == "smarties_tiny" and config["init_args"]["embed_dim"] == 64
    card = hub.load_card("tiny", tmp_path)
    assert (card.name, card.version, card.family) == ("tiny", "0.1", "smarties")
    assert (card.input_size, card.patch_size) == (32, 8)
    assert card.parameters == sum(p.numel() for p in model.parameters())
    bands = card.sensors["sentinel2_l1c"].bands
    assert len(bands) == 13
    assert bands[8] == BandInfo(name="B8A", wavelength_nm=864.7, fwhm_nm=21.0, gsd_m=20.0)
    assert card.gsd == {"sentinel2_l1c": 10.0}
    assert card.tags == ["x"] and card.hf_tags[-2:] == ["sentinel2_l1c", "x"]
    body = (entry / "card.md").read_text()
    assert "| 8 | B8A | 864.7 | 21 | 20 |" in body and 'rsfm.hub.load("tiny@0.1")' in body
    with pytest.raises(ValueError, match="unknown model-card field"):
        hub.push(model, "tiny", "0.2", tmp_path, card={"bogus": 1})
    assert hub.list_models(tmp_path)[-1]["version"] == "0.1"  # the refused push wrote nothing


def test_pushed_files_get_the_umask_mode_not_the_temporary_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        hub.push(_tiny(), "tiny", "1.0", tmp_path)
    finally:
        os.umask(old)
    entry = tmp_path / "tiny@1.0"
    assert stat.S_IMODE(entry.stat().st_mode) == 0o755
    for path in [tmp_path / "index.json", *entry.iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_huggingface_hub_reads_the_entry_folder(tmp_path: Path) -> None:
    model = _tiny()
    hub.push(model.encoder, "enc", "1.0", tmp_path, card={"license": "cc-by-4.0"})
    entry = tmp_path / "enc@1.0"
    card = ModelCard.load(entry / "card.md")
    assert card.data.license == "cc-by-4.0"
    assert {"rsfm", "remote-sensing", "smarties"} <= set(card.data.tags)
    assert card.data.library_name == "rsfm"
    assert card.data.to_dict()["rsfm"]["architecture"]["class_path"].endswith("SmartiesEncoder")
    assert "## How to load" in card.text

    class HubEncoder(SmartiesEncoder, PyTorchModelHubMixin):
        """ModelHubMixin class taking our config.json (init_args) as is."""

        def __init__(self, init_args: dict | None = None, **config: Any) -> None:
            super().__init__(**(init_args or {}))

    mixin_model = HubEncoder.from_pretrained(entry, strict=True)
    assert torch.equal(_encoder_outputs(mixin_model.eval()), _encoder_outputs(model.encoder))


def test_save_pretrained_and_unindexed_folders(tmp_path: Path) -> None:
    model = _tiny()
    folder = hub.save_pretrained(model, tmp_path / "mine", card={"description": "local"})
    assert sorted(p.name for p in folder.iterdir()) == sorted(ENTRY_FILES)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    with pytest.raises(hub.EntryNotFoundError, match="verify=False"):
        hub.load(folder)
    loaded = hub.load(folder, verify=False)
    assert torch.equal(_mae_outputs(loaded)[1], _mae_outputs(model)[1])
    assert loaded.rsfm_card.description == "local"
    with pytest.raises(hub.EntryExistsError):
        hub.save_pretrained(model, folder)
    # An indexed entry can also be loaded by its folder path (checked against ../index.json).
    hub.push(model, "m", "1.0", tmp_path / "hub")
    assert type(hub.load(tmp_path / "hub" / "m@1.0")) is SmartiesMAE


def test_tied_weights_are_saved_once_and_retied(tmp_path: Path) -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(4, 4, bias=False)
            self.head = nn.Linear(4, 4, bias=False)
            self.head.weight = self.embed.weight

    torch.manual_seed(0)
    model, path = Tied(), tmp_path / "tied.safetensors"
    hub.save_weights(model, path)
    with safe_open(path, framework="pt") as handle:
        assert len(list(handle.keys())) == 1
    fresh = Tied()
    hub.load_weights(fresh, path)
    assert fresh.head.weight is fresh.embed.weight
    assert torch.equal(fresh.head.weight, model.embed.weight)
    with pytest.raises(hub.HubError, match="do not fit"):
        hub.load_weights(nn.Linear(4, 3), path)


# --------------------------------------------------------------------- lightning checkpoints
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MAEPretrainTask]:
    """Two MAE steps on the tiny synthetic world, checkpointed as a Lightning run folder."""
    run = tmp_path_factory.mktemp("run")
    pl.seed_everything(0)
    datamodule = GeoDataModule(
        synthetic=TINY_WORLD,
        patch_size=32,
        batch_size=4,
        num_workers=0,
        samples_per_epoch=8,
        val_samples=4,
        stats_samples=8,
    )
    task = MAEPretrainTask(model="smarties_tiny", lr=1e-3)
    checkpoint = ModelCheckpoint(dirpath=run / "checkpoints", monitor="val/loss", save_last=True)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=run,
        callbacks=[checkpoint],
    )
    trainer.fit(task, datamodule=datamodule)
    assert trainer.global_step == 2
    return run, task


def test_push_checkpoint_drops_optimizer_and_keeps_stats(
    trained_run: tuple[Path, MAEPretrainTask], tmp_path: Path
) -> None:
    run, task = trained_run
    last = hub.resolve_checkpoint(run)
    assert last.name == "last.ckpt"
    assert hub.resolve_checkpoint(run, best=True).name == "epoch=0-step=2.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["optimizer_states"]  # the source has optimiser state ...

    ref = hub.push_checkpoint(run, "mae", hub=tmp_path, metrics=None)
    entry = tmp_path / ref.key
    assert ref.key == "mae@1.0" and sorted(p.name for p in entry.iterdir()) == sorted(ENTRY_FILES)
    with safe_open(entry / "model.safetensors", framework="pt") as handle:
        keys = set(handle.keys())
    assert keys == set(task.model.state_dict())  # ... the entry only the network, no prefix
    assert not any(k.startswith(("model.", "optimizer")) or "exp_avg" in k for k in keys)

    model = hub.load("mae", tmp_path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][f"model.{key}"]), key
    card = model.rsfm_card
    stats = card.normalization
    assert stats["sentinel2_l1c"].to_dict() == ckpt["rsfm_band_stats"]["sentinel2_l1c"]
    assert set(stats) == {"sentinel2_l1c", "landsat8_sr", "naip", "sentinel1_grd"}
    assert len(stats["sentinel2_l1c"].mean) == 13
    s1_bands = card.known_sensors()["sentinel1_grd"].bands
    assert [b.name for b in s1_bands] == ["VV", "VH"] and s1_bands[1].wavelength_nm < 0
    assert card.training["hyper_parameters"]["lr"] == 1e-3
    assert card.training["hyper_parameters"]["betas"] == [0.9, 0.95]
    assert card.training["global_step"] == 2 and card.training["checkpoint"] == "last.ckpt"
    best = ckpt["callbacks"][next(k for k in ckpt["callbacks"] if "ModelCheckpoint" in k)]
    assert card.metrics == {"val/loss": float(best["best_model_score"])}
    assert card.task == "masked-image-modeling" and card.output == "embeddings"

    enc_ref = hub.push_checkpoint(
        last, "enc", "2.0", tmp_path, component="encoder", metrics={"knn_acc": 0.5}, license="mit"
    )
    encoder = hub.load(enc_ref.key, tmp_path)
    assert type(encoder) is SmartiesEncoder
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, ckpt["state_dict"][f"model.encoder.{key}"]), key
    assert encoder.rsfm_card.license == "mit"
    assert encoder.rsfm_card.metrics == {"knn_acc": 0.5}
    assert encoder.rsfm_card.task == "feature-extraction"

    # A task object pushes its network with the statistics it trained with.
    hub.push(task, "from-task", hub=tmp_path)
    card = hub.load_card("from-task", tmp_path)
    assert card.normalization["naip"].to_dict() == ckpt["rsfm_band_stats"]["naip"]


def test_push_checkpoint_refuses_foreign_checkpoints(tmp_path: Path) -> None:
    foreign = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(hub.HubError, match="rsfm_model_config"):
        hub.push_checkpoint(foreign, "x", hub=tmp_path / "hub")
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(foreign.read_bytes()[:40])
    with pytest.raises(hub.HubError, match="cut.ckpt"):
        hub.push_checkpoint(truncated, "x", hub=tmp_path / "hub")
    with pytest.raises(FileNotFoundError):
        hub.push_checkpoint(tmp_path / "missing_run", "x", hub=tmp_path / "hub")
    assert not (tmp_path / "hub" / "index.json").exists()


# --------------------------------------------------------------------------------- integrity
@pytest.mark.parametrize("file_name", ["model.safetensors", "card.md", "config.json"])
def test_tampered_file_is_refused_naming_it(tmp_path: Path, file_name: str) -> None:
    hub.push(_tiny(), "m", "1.0", tmp_path)
    _flip_byte(tmp_path / "m@1.0" / file_name)
    for action in (hub.load, hub.load_card, hub.verify):
        with pytest.raises(hub.IntegrityError, match=f"sha256 mismatch for {file_name}"):
            action("m@1.0", tmp_path)
    with pytest.raises(hub.IntegrityError, match=file_name):
        hub.pull("m", tmp_path, tmp_path / "other")
    assert not (tmp_path / "other" / "m@1.0").exists()


def test_truncated_or_missing_file_is_refused(tmp_path: Path) -> None:
    hub.push(_tiny(), "m", "1.0", tmp_path)
    weights = tmp_path / "m@1.0" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(hub.IntegrityError, match="model.safetensors has .* bytes"):
        hub.load("m", tmp_path)
    weights.unlink()
    with pytest.raises(hub.IntegrityError, match="model.safetensors is missing"):
        hub.load("m", tmp_path)


def test_entry_missing_from_index_is_refused(tmp_path: Path) -> None:
    hub.push(_tiny(), "m", "1.0", tmp_path)
    index_path = tmp_path / "index.json"
    index = json.loads(index_path.read_text())
    del index["entries"]["m@1.0"]
    index_path.write_text(json.dumps(index))
    with pytest.raises(hub.EntryNotFoundError, match="'m'"):
        hub.load("m", tmp_path)
    with pytest.raises(hub.EntryNotFoundError, match="not an entry listed"):
        hub.load(tmp_path / "m@1.0")
    index_path.unlink()
    with pytest.raises(hub.EntryNotFoundError):
        hub.load("m@1.0", tmp_path)
    assert hub.list_models(tmp_path) == []


@pytest.mark.parametrize("bad", ["../x", "/abs", "a/b", "", "..", "a..b", ".hidden", "a b"])
def test_unsafe_names_are_refused(tmp_path: Path, bad: str) -> None:
    hub_dir = tmp_path / "hub"
    with pytest.raises(hub.InvalidNameError):
        EntryRef.parse(bad)
    with pytest.raises(hub.InvalidNameError):
        hub.push(_tiny(), bad, "1.0", hub_dir)
    with pytest.raises(hub.InvalidNameError):
        hub.pull(bad, hub_dir, tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["hub"])
    assert not hub_dir.exists() or not list(hub_dir.glob("*@*"))


def test_unsafe_version_in_a_crafted_index_is_refused(tmp_path: Path) -> None:
    hub.push(_tiny(), "m", "1.0", tmp_path)
    index_path = tmp_path / "index.json"
    index = json.loads(index_path.read_text())
    index["entries"]["m@1.0"]["version"] = "../../outside"
    index_path.write_text(json.dumps(index))
    with pytest.raises(hub.InvalidNameError, match="outside"):
        hub.load("m", tmp_path)


def test_bad_versions_are_refused(tmp_path: Path) -> None:
    for bad in ["1.0/../../x", "latest", "1.0+local", ""]:
        with pytest.raises(hub.InvalidNameError):
            hub.push(_tiny(), "m", bad, tmp_path)
    with pytest.raises(hub.InvalidNameError):
        EntryRef.parse("m@")


# ------------------------------------------------------------------------- versions, writes
def test_semantic_version_ordering_and_latest(tmp_path: Path) -> None:
    models = {v: _tiny(seed) for seed, v in enumerate(["1.9", "1.10", "1.2"])}
    for version, model in models.items():
        hub.push(model, "m", version, tmp_path)
    rows = hub.list_models(tmp_path)
    assert [r["version"] for r in rows] == ["1.2", "1.9", "1.10"]
    assert [r["latest"] for r in rows] == [False, False, True]
    assert json.loads((tmp_path / "index.json").read_text())["latest"] == {"m": "1.10"}
    latest = hub.load("m", tmp_path)
    assert torch.equal(latest.mask_token, models["1.10"].mask_token)
    assert not torch.equal(latest.mask_token, models["1.9"].mask_token)
    assert hub.push(_tiny(), "m", hub=tmp_path).key == "m@1.11"  # next version after 1.10
    assert hub.push(_tiny(), "fresh", hub=tmp_path).key == "fresh@1.0"
    assert next_version(["2.0.9", "2.0.10"]) == "2.0.11"
    assert hub.push(_tiny(), "m", "v2.01", tmp_path).key == "m@2.1"  # canonical PEP 440


def test_existing_version_is_refused_unless_overwrite(tmp_path: Path) -> None:
    first, second = _tiny(0), _tiny(1)
    hub.push(first, "m", "1.0", tmp_path)
    before = (tmp_path / "index.json").read_text()
    with pytest.raises(hub.EntryExistsError, match="m@1.0 already exists"):
        hub.push(second, "m", "1.0", tmp_path)
    assert (tmp_path / "index.json").read_text() == before
    assert torch.equal(hub.load("m", tmp_path).mask_token, first.mask_token)
    hub.push(second, "m", "1.0", tmp_path, overwrite=True)
    assert torch.equal(hub.load("m", tmp_path).mask_token, second.mask_token)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith((".staging", ".retired"))]
    assert leftovers == []
    # A failed write (a module that cannot describe itself) leaves the hub as it was.
    with pytest.raises(TypeError, match="init_args"):
        hub.push(nn.Linear(2, 2), "plain", "1.0", tmp_path)
    assert [r["name"] for r in hub.list_models(tmp_path)] == ["m"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]


def test_default_hub_location_and_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No $RSFM_HUB: pushes go to $XDG_CACHE_HOME/rsfm/hub, never into ./checkpoints.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RSFM_HUB")  # set per session by conftest: it must exist here
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    hub.push(_tiny(), "m", "1.0")
    assert (tmp_path / "xdg" / "rsfm" / "hub" / "m@1.0" / "model.safetensors").is_file()
    assert not (tmp_path / "checkpoints").exists()
    monkeypatch.setenv("RSFM_HUB", str(tmp_path / "env_hub"))
    hub.pull("m", tmp_path / "xdg" / "rsfm" / "hub")
    assert "m" in [r["name"] for r in hub.list_models()]
    assert [r["name"] for r in hub.list_models(tmp_path / "env_hub")] == ["m"]
    assert hub.open_hub(f"file://{tmp_path}/env_hub").root == tmp_path / "env_hub"
    remote = hub.open_hub("hf://owner/repo")
    assert isinstance(remote, hub.HuggingFaceHub) and remote.repo_id == "owner/repo"
    for bad in ["hf://only-owner", "s3://bucket/x", "file://host/x"]:
        with pytest.raises(hub.HubError):
            hub.open_hub(bad)


# ---------------------------------------------------------------------------------------- CLI
def test_cli_round_trip(
    trained_run: tuple[Path, MAEPretrainTask],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, _ = trained_run
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")

    def cli(*args: str) -> tuple[int, str, str]:
        code = hub_main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    assert cli("list", "--hub", src)[2].startswith("rsfm hub list: error: no hub at")
    Path(src).mkdir()
    assert cli("list", "--hub", src)[1].startswith("no models in")
    code, out, _ = cli("push", str(run), "--name", "mae", "--hub", src)
    assert code == 0 and "pushed mae@1.0" in out
    code, out, _ = cli(
        "push",
        str(run / "checkpoints" / "last.ckpt"),
        "--name",
        "mae-encoder",
        "--version",
        "2.0",
        "--component",
        "encoder",
        "--hub",
        src,
        "--metric",
        "knn_acc=0.75",
    )
    assert code == 0 and "pushed mae-encoder@2.0" in out
    code, out, err = cli("push", str(run), "--name", "mae", "--version", "1.0", "--hub", src)
    assert code == 1 and "already exists" in err

    code, out, _ = cli("list", "--hub", src)
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split()[:3] == ["NAME", "VERSION", "LATEST"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["mae", "1.0", "*"],
        ["mae-encoder", "2.0", "*"],
    ]

    code, out, _ = cli("show", "mae-encoder", "--hub", src)
    assert code == 0 and out.startswith("mae-encoder@2.0")
    assert "rsfm.models.smarties.SmartiesEncoder [encoder]" in out
    assert "sentinel2_l1c: 13 bands (B01, B02" in out and "metric    knn_acc = 0.75" in out
    index = json.loads((tmp_path / "src" / "index.json").read_text())
    assert index["entries"]["mae-encoder@2.0"]["files"]["model.safetensors"]["sha256"] in out
    code, out, _ = cli("show", "mae", "--hub", src, "--json")
    assert code == 0 and json.loads(out)["rsfm"]["architecture"]["name"] == "smarties_tiny"

    code, out, _ = cli("pull", "mae-encoder@2.0", "--from", src, "--hub", dst)
    assert code == 0 and "pulled mae-encoder@2.0" in out
    code, out, _ = cli("verify", "mae-encoder", "--hub", dst)
    assert code == 0 and out.strip() == "OK mae-encoder@2.0: 3 files match index.json"
    pulled, pushed = hub.load("mae-encoder", dst), hub.load("mae-encoder", src)
    assert torch.equal(_encoder_outputs(pulled), _encoder_outputs(pushed))

    _flip_byte(tmp_path / "dst" / "mae-encoder@2.0" / "card.md", offset=-5)
    code, _, err = cli("verify", "mae-encoder@2.0", "--hub", dst)
    assert code == 1 and "sha256 mismatch for card.md" in err
    code, _, err = cli("show", "nothing", "--hub", dst)
    assert code == 1 and "no model named 'nothing'" in err
    code, _, err = cli("pull", "../evil", "--from", src, "--hub", dst)
    assert code == 1 and "invalid model name '../evil'" in err
