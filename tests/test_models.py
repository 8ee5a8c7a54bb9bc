import os

import pytest

from lingting_models import CatalogError, list_models, resolve_model
from lingting_server.engines.devices import resolve_device


def test_catalog_lists_both_embedded_models():
    names = {m["name"] for m in list_models()}
    assert {"whisper-base", "whisper-tiny.en"} <= names


def test_split_model_is_joined_once_into_the_cache(tmp_path):
    spec = resolve_model("whisper-base", cache_dir=tmp_path)
    model_bin = spec.path / "model.bin"
    assert model_bin.stat().st_size > 100_000_000
    assert {p.name for p in spec.path.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt"}
    mtime = model_bin.stat().st_mtime_ns
    again = resolve_model("whisper-base", cache_dir=tmp_path)
    assert again.path == spec.path and model_bin.stat().st_mtime_ns == mtime
    # No half-written temporary directories are left behind.
    assert [p.name for p in tmp_path.iterdir()] == [spec.path.name]


def test_alias_and_package_dir_model():
    spec = resolve_model("tiny.en")
    assert spec.name == "whisper-tiny.en" and (spec.path / "model.bin").exists()
    assert spec.languages == ("en",)


def test_local_dir_and_errors(tmp_path):
    with pytest.raises(CatalogError, match="whisper-base"):
        resolve_model("no-such-model")
    with pytest.raises(CatalogError, match="model.bin"):
        resolve_model(str(tmp_path))
    local = resolve_model(os.fspath(resolve_model("tiny.en").path))
    assert local.engine == "whisper"


def test_device_choice_falls_back_to_cpu():
    assert resolve_device("cpu") == ("cpu", 0)
    assert resolve_device("auto")[0] in ("cpu", "cuda")
    assert resolve_device("mps") == ("cpu", 0)          # CTranslate2 has no MPS backend
    with pytest.raises(ValueError):
        resolve_device("tpu")
