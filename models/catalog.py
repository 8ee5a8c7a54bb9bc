from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

_MANIFEST_DIR = Path(__file__).parent
DEFAULT_CACHE = Path(os.environ.get("LINGTING_CACHE", Path.home() / ".cache" / "lingting"))


class CatalogError(Exception):
    """A model name that is not in the catalog, or a source that is not installed."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    engine: str
    path: Path
    languages: tuple[str, ...] = ()
    description: str = ""
    streaming: str = "re-decode"
    extra: dict = field(default_factory=dict)


def _manifests() -> dict[str, dict]:
    out = {}
    for f in sorted(_MANIFEST_DIR.glob("*.toml")):
        data = tomllib.loads(f.read_text())
        out[data["name"]] = data
        for alias in data.get("aliases", []):
            out[alias] = data
    return out


def list_models() -> list[dict]:
    seen, result = set(), []
    for data in _manifests().values():
        if data["name"] not in seen:
            seen.add(data["name"])
            result.append(data)
    return result


def default_model_name() -> str:
    for data in list_models():
        if data.get("default"):
            return data["name"]
    raise CatalogError("no model in the catalog is marked default")


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CatalogError(
            f"model package {package!r} is not installed; "
            f"run: pip install {package.replace('_', '-')}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _join_parts(source: dict, cache_dir: Path) -> Path:
    """Join a model split over several packages into one directory, once.

    The directory is built beside its final place and renamed into it, so a
    crash or a concurrent start never leaves a half-written model behind."""
    dirs = [_package_dir(p) / source["data_dir"] for p in source["packages"]]
    parts = [next(d / name for d in dirs if (d / name).exists()) for name in source["parts"]]
    key = hashlib.sha1(
        "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in parts).encode()
    ).hexdigest()[:12]
    target = cache_dir / f"{dirs[0].parent.name}-{key}"
    if (target / source["joined"]).exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".join-", dir=cache_dir))
    try:
        with open(tmp / source["joined"], "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        for name in source["files"]:
            shutil.copy2(next(d / name for d in dirs if (d / name).exists()), tmp / name)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / source["joined"]).exists():  # lost a race with a broken peer
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(name_or_dir: str | None, cache_dir: Path | None = None) -> ModelSpec:
    """Catalog name (or alias) or a local model directory -> a loadable ModelSpec."""
    name_or_dir = name_or_dir or default_model_name()
    local = Path(name_or_dir).expanduser()
    if local.is_dir():
        if not (local / "model.bin").exists():
            raise CatalogError(f"{local} has no model.bin: not a CTranslate2 Whisper model dir")
        return ModelSpec(name=local.name, engine="whisper", path=local.resolve())
    manifests = _manifests()
    if name_or_dir not in manifests:
        names = ", ".join(sorted(d["name"] for d in list_models()))
        raise CatalogError(f"unknown model {name_or_dir!r}; catalog: {names}; or pass a model directory")
    data = manifests[name_or_dir]
    source = data["source"]
    if source["kind"] == "pypi-dir":
        path = _package_dir(source["package"]) / source["data_dir"]
    elif source["kind"] == "pypi-parts":
        path = _join_parts(source, cache_dir or DEFAULT_CACHE)
    else:
        raise CatalogError(f"model {data['name']}: unknown source kind {source['kind']!r}")
    extra = {k: v for k, v in data.items() if k not in {"name", "engine", "languages", "description", "streaming", "source", "aliases", "default"}}
    return ModelSpec(
        name=data["name"],
        engine=data["engine"],
        path=path,
        languages=tuple(data.get("languages", ())),
        description=data.get("description", ""),
        streaming=data.get("streaming", "re-decode"),
        extra=extra,
    )
