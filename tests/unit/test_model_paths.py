"""The `model` parameter's lookup (issue 16 item 1): working directory, then the ament index's
share/clap_ros, then the source checkout; '' follows the robot's default_model; a missing bundle
names every place looked and the model:= to pass."""

from pathlib import Path

import pytest

from clap_ros.inference import model_paths
from clap_ros.inference.model_paths import ModelNotFoundError, find_model_dir, resolve_model_dir
from clap_ros.robots import available_profiles, load_profile

REPO = Path(__file__).resolve().parents[2]


def _ament_prefix(root: Path, bundle: str) -> Path:
    """A prefix as colcon installs it: the ament resource marker plus share/clap_ros/<bundle>."""
    (root / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (root / "share" / "ament_index" / "resource_index" / "packages" / "clap_ros").write_text("")
    d = root / "share" / "clap_ros" / bundle
    d.mkdir(parents=True)
    (d / "manifest.yaml").write_text("robot: fr3\n")
    return d


def test_default_model_is_a_profile_fact():
    assert {r: load_profile(r).default_model for r in available_profiles()} == {
        "fr3": "models/default",
        "panda": "models/default",
        "ur5e": "models/ur5e",
    }


def test_ament_index_share_is_searched_after_the_working_directory(tmp_path, monkeypatch):
    bundle = _ament_prefix(tmp_path / "install", "models/only_installed")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "install"))
    assert model_paths.ament_share_dir() == tmp_path / "install" / "share" / "clap_ros"
    assert find_model_dir("models/only_installed") == bundle
    # the installed share wins over the source checkout for the same relative name
    installed_default = _ament_prefix(tmp_path / "install2", "models/default")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "install2"))
    assert find_model_dir("", load_profile("fr3")) == installed_default
    # ...and the working directory wins over both
    (elsewhere / "models" / "default").mkdir(parents=True)
    assert find_model_dir("models/default") == elsewhere / "models" / "default"
    assert resolve_model_dir("models/default") == elsewhere / "models" / "default"


def test_without_the_index_the_source_checkout_is_used(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    assert model_paths.ament_share_dir() is None
    assert find_model_dir("", load_profile("fr3")) == REPO / "models" / "default"
    assert find_model_dir("", load_profile("panda")) == REPO / "models" / "default"


def test_missing_bundle_names_every_place_and_the_parameter(tmp_path, monkeypatch):
    install = tmp_path / "install"
    _ament_prefix(install, "models/default")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(install))
    with pytest.raises(ModelNotFoundError) as e:
        find_model_dir("", load_profile("ur5e"))
    text = str(e.value)
    assert "models/ur5e" in text and "'ur5e'" in text and "model:=" in text
    for place in (
        tmp_path / "models" / "ur5e",
        install / "share" / "clap_ros" / "models" / "ur5e",
        REPO / "models" / "ur5e",
    ):
        assert str(place) in text
    # no index: the message says how to get one
    monkeypatch.delenv("AMENT_PREFIX_PATH")
    with pytest.raises(ModelNotFoundError, match="AMENT_PREFIX_PATH"):
        find_model_dir("models/nope")


def test_absolute_and_empty_without_default(tmp_path):
    (tmp_path / "b").mkdir()
    assert find_model_dir(str(tmp_path / "b")) == tmp_path / "b"
    with pytest.raises(ModelNotFoundError, match="absolute path"):
        find_model_dir(str(tmp_path / "missing"))
    with pytest.raises(ModelNotFoundError, match="no default_model"):
        find_model_dir("", None)
    assert resolve_model_dir("nope") == Path.cwd() / "nope"  # the loader's error names it
