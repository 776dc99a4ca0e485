"""The bundle names its image preprocessing; the runtime checks it and refuses one it lacks."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from clap_ros.inference.bundle import BundleError, load_bundle
from clap_ros.inference.preprocess import (
    PREPROCESSING,
    PREPROCESSING_VERSION,
    PreprocessingError,
    Preprocessor,
    preprocess_rgb,
    preprocessing_spec,
    spec_from_manifest,
    to_unit,
)

DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default"


def bundle_with(tmp_path, fn):
    dst = tmp_path / "bundle"
    shutil.copytree(DEFAULT, dst)
    path = dst / "manifest.yaml"
    m = yaml.safe_load(path.read_text())
    fn(m)
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    return dst


def test_shipped_bundle_names_the_recipe_at_its_encoder_size():
    b = load_bundle(DEFAULT, check_onnx=False)
    assert (b.preprocessing.name, b.preprocessing.version) == (PREPROCESSING, PREPROCESSING_VERSION)
    assert (b.preprocessing.height, b.preprocessing.width) == (b.image_height, b.image_width)
    img = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        Preprocessor.for_bundle(b)(img), preprocess_rgb(img, b.image_height, b.image_width)
    )


def test_manifest_without_the_field_is_the_legacy_recipe(tmp_path):
    b = load_bundle(bundle_with(tmp_path, lambda m: m.pop("preprocessing", None)), check_onnx=False)
    assert b.preprocessing == preprocessing_spec(b.image_height, b.image_width)


@pytest.mark.parametrize(
    "entry, match",
    [
        (
            {"name": "imagenet_bilinear_crop", "version": 1, "size": [64, 64]},
            "'imagenet_bilinear_crop' version 1; this runtime implements only "
            "'rgb_area_unit' version 1",
        ),
        ({"name": "rgb_area_unit", "version": 2, "size": [64, 64]}, "version 2"),
        (
            {"name": "rgb_area_unit", "version": 1, "size": [32, 32]},
            "differs from the encoder input",
        ),
        ({"name": "rgb_area_unit", "version": 1}, "preprocessing.size None"),
        ("rgb_area_unit", "must be a mapping"),
    ],
)
def test_unknown_or_inconsistent_recipe_is_refused_with_a_clear_message(tmp_path, entry, match):
    path = bundle_with(tmp_path, lambda m: m.update(preprocessing=entry))
    with pytest.raises(BundleError, match="manifest.yaml: ") as exc:
        load_bundle(path, check_onnx=False)
    assert match in str(exc.value)


def test_mean_std_outside_the_graph_is_refused(tmp_path):
    path = bundle_with(tmp_path, lambda m: m["image"].update(normalized_in_graph=False))
    with pytest.raises(BundleError, match="normalized_in_graph is False"):
        load_bundle(path, check_onnx=False)


def test_spec_round_trips_through_its_manifest_entry():
    spec = preprocessing_spec(48, 64)
    assert spec_from_manifest(spec.to_manifest(), 48, 64) == spec
    with pytest.raises(PreprocessingError):
        spec_from_manifest(spec.to_manifest(), 64, 48)


def test_to_unit_numpy_and_torch_are_bit_identical():
    torch = pytest.importorskip("torch")
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    a = to_unit(x)
    b = to_unit(torch.from_numpy(x)).numpy()
    assert a.dtype == b.dtype == np.float32
    assert a.min() == 0.0 and a.max() == 1.0
    np.testing.assert_array_equal(a, b)
