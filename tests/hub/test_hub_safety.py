"""Hub safety: only registry models are built from a config.json; links are refused and the
bytes hashed are the bytes loaded; killed pushes leave no staging folder for good; pushes go to
a user hub while lookups also find the shipped, read-only checkpoints/ from any directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

import rsfm.hub as hub
import rsfm.hub.store as store
from rsfm.hub.backends import STALE_AFTER_S, _host, shipped_hubs, user_hub_location
from rsfm.hub.commands import hub_main
from rsfm.hub.entry import ENTRY_FILES, sha256_file
from rsfm.models.registry import ModelConfigError, create_model, model_config, model_from_config
from rsfm.models.smarties import SmartiesMAE
from rsfm.sensors import get_sensor

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "checkpoints"
SHIPPED_INDEX = (SHIPPED / "index.json").read_bytes()


def _tiny(seed: int = 0) -> SmartiesMAE:
    torch.manual_seed(seed)
    return create_model("smarties_tiny")


def _pushed(root: Path, name: str = "m", version: str = "1.0", seed: int = 0) -> Path:
    hub.push(_tiny(seed), name, version, root)
    return root / f"{name}@{version}"


def _reindex(root: Path, key: str, file_name: str) -> None:
    """Record a rewritten file's hash, as someone who controls the hub (or a remote) would."""
    path = root / key / file_name
    index = json.loads((root / "index.json").read_text())
    index["entries"][key]["files"][file_name] = {
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
    }
    (root / "index.json").write_text(json.dumps(index))


# ------------------------------------------------------------------- config.json class paths
_TINY_UNET = {
    "sample_size": 8,
    "block_out_channels": [8],
    "down_block_types": ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "cross_attention_dim": 8,
}
# case -> (class path, init args): a class re-exported by a family module (timm, diffusers), a
# Lightning task (one reads a file it is given), os.system reached through a family, a function.
REFUSED: dict[str, tuple[str, dict[str, Any]]] = {
    "timm-block": ("rsfm.models.smarties.Block", {"dim": 8, "num_heads": 2}),
    "diffusers-unet": ("rsfm.models.text2earth.UNet2DConditionModel", _TINY_UNET),
    "task": ("rsfm.tasks.mae.MAEPretrainTask", {"model": "smarties_tiny"}),
    "task-reading-a-file": ("rsfm.tasks.finetune.FineTuneTask", {"weights": "/nonexistent.ckpt"}),
    "os-through-a-family": ("rsfm.models.smarties.os.system", {"command": "true"}),
    "os": ("os.system", {"command": "true"}),
    "function": ("rsfm.models.layers.spectral.patchify", {}),
    "no-module": ("rsfm.models.nothing.Model", {}),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_config_naming_a_non_registry_class_is_a_hub_error(tmp_path: Path, case: str) -> None:
    entry = _pushed(tmp_path)
    class_path, init_args = REFUSED[case]
    config = {"name": None, "class_path": class_path, "init_args": init_args, "format_version": 1}
    (entry / "config.json").write_text(json.dumps(config))
    _reindex(tmp_path, "m@1.0", "config.json")
    message = f"{entry / 'config.json'}: refusing to build '{class_path}'"
    with pytest.raises(hub.HubError) as caught:
        hub.load("m", tmp_path)
    assert str(caught.value).startswith(message), caught.value
    with pytest.raises(ModelConfigError, match="refusing"):
        model_from_config(config)


def _mae_config() -> dict[str, Any]:
    return json.loads(json.dumps(model_config(_tiny())))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"name": "smarties_tiny_seg_upernet"}, "builds rsfm.models.finetune.FineTuneModel"),
        ({"name": "not_a_model"}, "is not a registered model"),
        ({"init_args": {"embed_dim": 64, "evil": 1}}, r"init_args \['evil'\]"),
        ({"init_args": "x"}, "init_args must be a JSON object"),
    ],
)
def test_a_config_with_a_wrong_name_or_arguments_is_a_hub_error(
    tmp_path: Path, change: dict[str, Any], why: str
) -> None:
    entry = _pushed(tmp_path)
    config = {**_mae_config(), **change}
    (entry / "config.json").write_text(json.dumps(config))
    _reindex(tmp_path, "m@1.0", "config.json")
    with pytest.raises(hub.HubError, match=why) as caught:
        hub.load("m", tmp_path)
    assert "config.json" in str(caught.value) and "SmartiesMAE" in str(caught.value)


def test_arguments_a_model_never_records_are_refused() -> None:
    # RSCLIP leaves its open_clip checkpoint path out of init_args: a config never holds it.
    config = {"class_path": "rsfm.models.clip.RSCLIP", "init_args": {"pretrained": "/etc/passwd"}}
    with pytest.raises(ModelConfigError, match=r"init_args \['pretrained'\]"):
        model_from_config(config)


def test_components_and_shipped_configs_still_build(tmp_path: Path) -> None:
    model = _tiny()
    assert type(model_from_config(model_config(model.encoder))).__name__ == "SmartiesEncoder"
    for config_path in sorted(SHIPPED.glob("*@*/config.json")):
        config = json.loads(config_path.read_text())
        assert type(model_from_config(config)).__name__ in ("SmartiesMAE", "FineTuneModel")


# ------------------------------------------------------------------------------ symbolic links
def _actions(root: Path, tmp_path: Path) -> dict[str, Any]:
    return {
        "load": lambda: hub.load("m@1.0", root),
        "load_card": lambda: hub.load_card("m@1.0", root),
        "verify": lambda: hub.verify("m@1.0", root),
        "describe": lambda: hub.describe("m@1.0", root),
        "load a path": lambda: hub.load(root / "m@1.0"),
        "pull": lambda: hub.pull("m@1.0", root, tmp_path / "dest"),
    }


@pytest.mark.parametrize("file_name", ENTRY_FILES)
def test_an_entry_file_linking_outside_the_hub_is_refused(tmp_path: Path, file_name: str) -> None:
    root = tmp_path / "hub"
    entry = _pushed(root)
    outside = tmp_path / "outside" / file_name
    outside.parent.mkdir()
    (entry / file_name).rename(outside)  # the same bytes: the recorded hash still matches
    (entry / file_name).symlink_to(outside)
    for action, call in _actions(root, tmp_path).items():
        with pytest.raises(hub.HubError, match=f"{file_name}.* is a symbolic link"):
            call()
        assert not (tmp_path / "dest" / "m@1.0").exists(), action
    code = hub_main(["verify", "m@1.0", "--hub", str(root)])
    assert code == 1


def test_an_entry_folder_link_or_a_link_inside_the_hub_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    entry = _pushed(root)
    moved = tmp_path / "elsewhere" / "m@1.0"
    moved.parent.mkdir()
    entry.rename(moved)
    entry.symlink_to(moved, target_is_directory=True)
    for call in _actions(root, tmp_path).values():
        with pytest.raises(hub.HubError, match=r"m@1\.0.* is a symbolic link"):
            call()
    # A link to another entry's identical file, inside the same hub, is refused as well.
    entry.unlink()
    moved.rename(entry)
    twin = _pushed(root, version="2.0")
    (twin / "model.safetensors").unlink()
    (twin / "model.safetensors").symlink_to(Path("..") / "m@1.0" / "model.safetensors")
    with pytest.raises(hub.HubError, match="model.safetensors.* is a symbolic link"):
        hub.load("m@2.0", root)
    assert type(hub.load("m@1.0", root)) is SmartiesMAE


def test_an_unindexed_folder_with_a_link_is_refused(tmp_path: Path) -> None:
    folder = hub.save_pretrained(_tiny(), tmp_path / "mine")
    (folder / "card.md").rename(tmp_path / "card.md")
    (folder / "card.md").symlink_to(tmp_path / "card.md")
    with pytest.raises(hub.HubError, match="card.md.* is a symbolic link"):
        hub.load(folder, verify=False)


def test_the_bytes_hashed_are_the_bytes_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _pushed(tmp_path, seed=0)
    other = tmp_path / "other.safetensors"
    hub.save_weights(_tiny(seed=1), other)
    weights = entry / "model.safetensors"
    recorded = json.loads((tmp_path / "index.json").read_text())["entries"]["m@1.0"]
    assert other.stat().st_size == weights.stat().st_size  # a same-size swap
    real_build = store.model_from_config

    def swap_then_build(config: dict[str, Any]) -> torch.nn.Module:
        os.replace(other, weights)  # swapped after verification, before the weights load
        return real_build(config)

    monkeypatch.setattr(store, "model_from_config", swap_then_build)
    model = hub.load("m", tmp_path)
    assert not other.exists()  # the swap happened
    assert torch.equal(model.mask_token, _tiny(seed=0).mask_token)
    assert model.rsfm_weights_sha256 == recorded["files"]["model.safetensors"]["sha256"]
    assert sha256_file(weights) != model.rsfm_weights_sha256


# ------------------------------------------------------------------------- stale staging folders
_KILLED_PUSH = """
import os, sys
from rsfm.hub.backends import LocalHub
staged = LocalHub(sys.argv[1]).staging_dir()
(staged / "model.safetensors").write_bytes(b"half a model")
print(staged, flush=True)
os._exit(9)  # killed mid-push: no cleanup runs
"""


def _age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    for item in [*path.iterdir(), path]:
        os.utime(item, (when, when), follow_symlinks=False)


def test_stale_staging_folders_are_removed_at_the_next_push(tmp_path: Path) -> None:
    root = tmp_path / "hub"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_PUSH, str(root)], capture_output=True, text=True, timeout=120
    )
    assert killed.returncode == 9, killed.stderr
    left = Path(killed.stdout.strip())
    assert left.is_dir() and left.parent == root
    old_unnamed = root / ".staging-abc123"  # an older rsfm's folder: by age only
    old_unnamed.mkdir()
    (old_unnamed / "config.json").write_text("{}")
    _age(old_unnamed, STALE_AFTER_S + 60)
    recent_unnamed = root / ".staging-def456"
    recent_unnamed.mkdir()
    other_host = root / ".staging-some-other-host+1+xyz"  # its pid cannot be checked here
    other_host.mkdir()
    live = root / f".staging-{_host()}+{os.getpid()}+live"  # a push still running
    live.mkdir()
    _age(live, STALE_AFTER_S + 60)
    retired = root / f".retired-{_host()}+{_dead_pid()}+m@0.1-abc"
    retired.mkdir()
    outside = tmp_path / "keep"
    outside.mkdir()
    (root / ".staging-link").symlink_to(outside, target_is_directory=True)
    _age(outside, STALE_AFTER_S + 60)

    hub.push(_tiny(), "m", "1.0", root)
    assert not left.exists() and not old_unnamed.exists() and not retired.exists()
    assert recent_unnamed.is_dir() and other_host.is_dir() and live.is_dir()
    assert outside.is_dir()  # links are never followed
    assert type(hub.load("m", root)) is SmartiesMAE


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


# ------------------------------------------------------------------ user hub and shipped models
def test_the_user_hub_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSFM_HUB", str(tmp_path / "env"))
    assert user_hub_location() == str(tmp_path / "env")
    monkeypatch.delenv("RSFM_HUB")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_hub_location() == str(tmp_path / "xdg" / "rsfm" / "hub")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: absolute only
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_hub_location() == str(tmp_path / "home" / ".cache" / "rsfm" / "hub")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert user_hub_location() == str(tmp_path / "home" / ".cache" / "rsfm" / "hub")


def test_lookups_find_shipped_models_from_any_directory_and_pushes_go_to_the_user_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "user"
    monkeypatch.setenv("RSFM_HUB", str(user))
    monkeypatch.chdir(tmp_path)  # outside the repository
    assert shipped_hubs() == [SHIPPED]
    model = hub.load("water-s2-tiny")
    assert model.rsfm_card.name == "water-s2-tiny" and not user.exists()
    names = {row["name"] for row in hub.list_models()}
    assert {"water-s2-tiny", "smarties-tiny"} <= names
    entry, _ = hub.describe("smarties-tiny@1.0.0")
    assert entry.path == SHIPPED / "smarties-tiny@1.0.0"

    assert hub.push(_tiny(), "mine").key == "mine@1.0"
    assert (user / "mine@1.0" / "model.safetensors").is_file()
    with pytest.raises(hub.EntryExistsError, match="shipped, read-only"):
        hub.push(_tiny(), "water-s2-tiny", "1.0.0")
    assert hub.push(_tiny(), "water-s2-tiny").key == "water-s2-tiny@1.0.1"  # after the shipped
    hub.push(_tiny(), "smarties-tiny", "1.0.0", overwrite=True)  # shadows, in the user hub
    entry, _ = hub.describe("smarties-tiny@1.0.0")
    assert entry.path == user / "smarties-tiny@1.0.0"
    assert hub.pull("water-s2-tiny@1.0.0", SHIPPED).key == "water-s2-tiny@1.0.0"  # identical
    assert not (user / "water-s2-tiny@1.0.0").exists()
    assert (SHIPPED / "index.json").read_bytes() == SHIPPED_INDEX  # never written

    # An explicit hub is that hub alone.
    with pytest.raises(hub.EntryNotFoundError, match="no model named 'indian-pines-tiny'"):
        hub.load("indian-pines-tiny", user)
    with pytest.raises(hub.EntryNotFoundError, match="searched"):
        hub.load("nothing-like-this")


def test_the_cli_pushes_to_the_user_hub_and_lists_shipped_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    user = tmp_path / "user"
    monkeypatch.setenv("RSFM_HUB", str(user))
    monkeypatch.chdir(tmp_path)
    model = _tiny()
    checkpoint = tmp_path / "run.ckpt"
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "rsfm_model_config": model_config(model),
        },
        checkpoint,
    )
    assert hub_main(["push", str(checkpoint), "--name", "from-cli"]) == 0
    assert capsys.readouterr().out.strip() == f"pushed from-cli@1.0 to {user}"
    assert hub_main(["list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert "from-cli" in listed and "water-s2-tiny" in listed
    assert hub_main(["show", "water-s2-tiny"]) == 0
    assert str(SHIPPED / "water-s2-tiny@1.0.0") in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert hub_main(["list", "--hub", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out.strip() == f"no models in {tmp_path / 'empty'}"
    # A hub folder that does not exist is a typo, not an empty hub: one line, exit 1.
    assert hub_main(["list", "--hub", str(tmp_path / "typo")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"rsfm hub list: error: no hub at {tmp_path / 'typo'} (the folder does not exist); "
        "check --hub, or create it with `rsfm hub push CHECKPOINT NAME --hub ...`"
    ]
    assert (SHIPPED / "index.json").read_bytes() == SHIPPED_INDEX


def test_rsfm_tile_finds_a_shipped_model_from_another_directory(tmp_path: Path) -> None:
    card = hub.load_card("water-s2-tiny@1.0.0", SHIPPED)
    stats = card.normalization["sentinel2_l1c"]
    low, high = np.array(stats.low)[:, None, None], np.array(stats.high)[:, None, None]
    image = low + (high - low) * np.random.default_rng(0).uniform(size=(13, 32, 32))
    source = tmp_path / "scene.tif"
    profile = dict(
        driver="GTiff", width=32, height=32, count=13, dtype="float32", crs="EPSG:32633",
        transform=from_origin(500_000, 4_500_000, 10, 10),
    )  # fmt: skip
    with rasterio.open(source, "w", **profile) as dst:
        dst.write(image.astype(np.float32))
        dst.descriptions = tuple(get_sensor("sentinel2_l1c").band_names)
    env = {**os.environ, "RSFM_HUB": str(tmp_path / "user"), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "rsfm.cli", "tile", "water-s2-tiny", "scene.tif", "map.tif"]
    result = subprocess.run(
        [*command, "--device", "cpu"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with rasterio.open(tmp_path / "map.tif") as out:
        assert (out.width, out.height) == (32, 32)
    assert not (tmp_path / "user").exists()


def test_load_untrained_is_the_architecture_without_the_weights(tmp_path: Path) -> None:
    """The random-init twin ``rsfm evaluate`` compares with: same config, fresh weights drawn
    from torch's seed, built from the verified config.json (a tampered one is refused)."""
    folder = _pushed(tmp_path, seed=3)
    pretrained = hub.load("m@1.0", tmp_path)
    torch.manual_seed(11)
    twin = hub.load_untrained("m@1.0", tmp_path)
    torch.manual_seed(11)
    again = hub.load_untrained(folder)
    config = hub.load_config("m@1.0", tmp_path)
    assert {k: config[k] for k in model_config(pretrained)} == model_config(pretrained)
    assert model_config(twin) == model_config(pretrained)
    state, twin_state = pretrained.state_dict(), twin.state_dict()
    assert state.keys() == twin_state.keys()
    weights = [k for k, v in state.items() if v.dtype.is_floating_point and v.numel() > 64]
    changed = [k for k in weights if not torch.equal(state[k], twin_state[k])]
    assert len(changed) > 0.5 * len(weights), (len(changed), len(weights))  # fixed ones: norms
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in twin_state.items())
    (folder / "config.json").write_text((folder / "config.json").read_text() + " ")
    with pytest.raises(hub.IntegrityError, match="config.json"):
        hub.load_untrained("m@1.0", tmp_path)
