"""Training specs: what ``llmos train SPEC`` reads, checked field by field before anything runs.

Map:
- ``load_spec(path)``: a TOML, JSON or YAML file -> ``TrainSpec`` (relative dataset paths
  are resolved against the file's folder; the name defaults to the file's stem).
- ``parse_spec(data, base=)``: a dict -> ``TrainSpec``; every bad value raises
  ``InvalidArgument`` naming the field (``dataset.samples``, ``demand.gpus``) and what was
  expected; an unknown key is refused, so a typo never passes silently.
- ``TrainSpec`` (with ``ModelSpec``, ``DataSpec``, ``Demand``): frozen; ``to_dict`` gives
  the normalized JSON that is journaled with the job and read back by its workers;
  ``key`` is a short hash of what determines the loss curve (same key: same job).

A spec (TOML)::

    name = "mlp-demo"
    recipe = "ddp"            # ddp | fsdp
    steps = 200
    batch_size = 64           # global batch per step, split evenly over the workers
    workers = 2
    [model]
    kind = "mlp"              # mlp | transformer
    [dataset]
    kind = "synthetic"        # synthetic | file (path = "data.csv" | ".jsonl" | ".npz")

The plan-retrieval adapter (``train.embedder``; one worker, CPU)::

    recipe = "embedder"
    steps = 20
    lr = 0.01
    [dataset]
    kind = "approved"         # the shell's example library + the person's approved plans

Torch is not imported here: specs are checked in the default tier and by the CLI.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmos.errors import InvalidArgument

__all__ = ["TrainSpec", "ModelSpec", "DataSpec", "Demand", "load_spec", "parse_spec", "RECIPES",
           "MODEL_KINDS", "DATA_KINDS", "DATA_SUFFIXES", "DEFAULT_PRIORITY", "WORKER_MEMORY_BYTES"]

RECIPES = ("ddp", "fsdp", "embedder")        # data parallel (DDP), model parallel (FSDP, sharded),
                                             # the plan-retrieval adapter (train.embedder)
MODEL_KINDS = ("mlp", "transformer", "adapter")
DATA_KINDS = ("synthetic", "file", "approved")   # approved: the shell's approved plans (embedder)
ADAPTER_RANK = 64                            # embedder: the adapter's default rank (model.hidden)
DATA_SUFFIXES = (".csv", ".jsonl", ".npz")
DEVICES = ("cpu", "gpu")
DEFAULT_PRIORITY = 10                        # nice-like: training runs after interactive work
WORKER_MEMORY_BYTES = 512 << 20              # default memory demand per worker (bytes)
MAX_WORKERS = 64
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ModelSpec:
    kind: str = "mlp"          # mlp | transformer | adapter (embedder)
    hidden: int = 64           # mlp: width of each hidden layer; transformer: d_model; adapter: rank
    layers: int = 2            # hidden layers (mlp) or encoder blocks (transformer)
    heads: int = 2             # transformer: attention heads (divides hidden)
    vocab: int = 32            # transformer: token ids 0..vocab-1


@dataclass(frozen=True)
class DataSpec:
    kind: str = "synthetic"    # synthetic | file | approved
    path: str | None = None    # file: absolute path (.csv: numbers, label last; .jsonl: {x, y}; .npz: x, y;
                               # embedder: .jsonl of {request, shape})
    samples: int = 4096        # synthetic: rows
    features: int = 16         # synthetic: inputs per row (transformer: sequence length)
    classes: int = 4           # synthetic: labels 0..classes-1
    seed: int = 0              # synthetic: the data's own seed


@dataclass(frozen=True)
class Demand:
    cores: float               # CPU cores held while it runs
    memory_bytes: int          # host memory held while it runs
    gpus: int = 0              # GPUs (one per worker on a GPU machine)


@dataclass(frozen=True)
class TrainSpec:
    name: str
    recipe: str
    model: ModelSpec
    dataset: DataSpec
    demand: Demand
    steps: int = 100           # optimizer steps in all
    batch_size: int = 64       # global batch per step (each worker takes batch_size / workers)
    lr: float = 1e-2           # AdamW learning rate
    seed: int = 0              # model init and data order
    workers: int = 1           # data-parallel processes (ranks)
    device: str = "cpu"        # cpu (gloo) | gpu (nccl)
    checkpoint_every: int = 10  # steps between checkpoints (and always at the end or a stop)
    keep_checkpoints: int = 2  # newest checkpoints kept
    priority: int = DEFAULT_PRIORITY   # kernel priority (-20..19; lower runs first)
    preemptible: bool = True   # yields to more urgent processes at a step boundary

    def to_dict(self) -> dict[str, Any]:
        """The normalized spec; ``parse_spec`` of it gives this spec back."""
        d = asdict(self)
        d["dataset"] = ({"kind": "file", "path": self.dataset.path} if self.dataset.kind == "file" else
                        {"kind": "approved"} if self.dataset.kind == "approved" else
                        {k: v for k, v in d["dataset"].items() if k != "path"})
        return d

    @property
    def key(self) -> str:
        """12 hex digits over the fields that shape the loss curve (not priority or demand)."""
        d = self.to_dict()
        for k in ("priority", "preemptible", "demand", "keep_checkpoints", "checkpoint_every", "name"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def per_worker_batch(self) -> int:
        return self.batch_size // self.workers


# ── reading ────────────────────────────────────────────────────────────────
def load_spec(path: str | Path) -> TrainSpec:
    """Read ``path`` (.toml, .json, .yaml/.yml) and check it."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InvalidArgument(f"SPEC: no such file {str(p)!r}", field="SPEC",
                              expected="a .toml, .json or .yaml training spec")
    suffix = p.suffix.lower()
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"SPEC: cannot read {str(p)!r} ({e})", field="SPEC",
                              expected="a readable UTF-8 file") from None
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise InvalidArgument(f"SPEC: unknown format {suffix or '(no suffix)'!r}", field="SPEC",
                                  expected=".toml, .json, .yaml or .yml")
    except InvalidArgument:
        raise
    except Exception as e:       # tomllib / json / yaml parse errors: one line, with the position
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InvalidArgument(f"SPEC: {p.name} does not parse as {suffix[1:].upper()}: {first}",
                              field="SPEC", expected=f"valid {suffix[1:].upper()}") from None
    if data is None:
        data = {}
    return parse_spec(data, base=p.parent, default_name=p.stem)


def parse_spec(data: Any, *, base: Path | None = None, default_name: str = "train") -> TrainSpec:
    """Check ``data`` field by field; return the normalized spec."""
    try:
        return _parse(data, base, default_name)
    except InvalidArgument as e:       # the hint says what the field takes
        if not e.hint and e.expected:
            e.hint = f"{e.field}: expected {e.expected}"
        raise


def _parse(data: Any, base: Path | None, default_name: str) -> TrainSpec:
    if not isinstance(data, dict):
        raise InvalidArgument("spec: expected a table of fields", field="spec", expected="an object")
    _only(data, "", ("name", "recipe", "model", "dataset", "steps", "batch_size", "lr", "seed",
                     "workers", "device", "checkpoint_every", "keep_checkpoints", "priority",
                     "preemptible", "demand"))
    name = data.get("name", _slug(default_name))
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgument(f"name: expected letters, digits, '.', '_' or '-' (1-64), got {name!r}",
                              field="name", expected="a short name like mlp-demo")
    if "recipe" not in data:
        raise InvalidArgument("recipe: missing", field="recipe", expected=" | ".join(RECIPES))
    recipe = data["recipe"]
    if recipe not in RECIPES:
        raise InvalidArgument(f"recipe: unknown recipe {recipe!r}", field="recipe",
                              expected=" | ".join(RECIPES))
    if "dataset" not in data:
        raise InvalidArgument("dataset: missing", field="dataset",
                              expected="a [dataset] table: kind = synthetic, or kind = file with a path")
    workers = _int(data, "workers", 1, lo=1, hi=MAX_WORKERS)
    batch = _int(data, "batch_size", 64, lo=1, hi=1 << 20)
    if batch % workers:
        raise InvalidArgument(f"batch_size: {batch} does not split evenly over workers = {workers}",
                              field="batch_size", expected=f"a multiple of {workers}")
    device = data.get("device", "cpu")
    if device not in DEVICES:
        raise InvalidArgument(f"device: expected cpu or gpu, got {device!r}", field="device",
                              expected="cpu | gpu")
    model = _model(data.get("model", {"kind": "adapter"} if recipe == "embedder" else {}))
    dataset = _dataset(data["dataset"], base)
    if model.kind == "transformer" and dataset.kind == "file":
        raise InvalidArgument("dataset.kind: the transformer model trains on synthetic token data only",
                              field="dataset.kind", expected="synthetic (or model.kind = mlp)")
    _check_embedder(recipe, model, dataset, workers, device)
    priority = _int(data, "priority", DEFAULT_PRIORITY, lo=-20, hi=19)
    preemptible = data.get("preemptible", True)
    if not isinstance(preemptible, bool):
        raise InvalidArgument(f"preemptible: expected true or false, got {preemptible!r}",
                              field="preemptible", expected="true | false")
    return TrainSpec(
        name=name, recipe=recipe, model=model, dataset=dataset,
        demand=_demand(data.get("demand", {}), workers, device),
        steps=_int(data, "steps", 100, lo=1, hi=10_000_000), batch_size=batch,
        lr=_float(data, "lr", 1e-2, lo=0.0, hi=10.0), seed=_int(data, "seed", 0, lo=0, hi=2**31 - 1),
        workers=workers, device=device,
        checkpoint_every=_int(data, "checkpoint_every", 10, lo=1, hi=10_000_000),
        keep_checkpoints=_int(data, "keep_checkpoints", 2, lo=1, hi=1000),
        priority=priority, preemptible=preemptible)


# ── parts ──────────────────────────────────────────────────────────────────
def _check_embedder(recipe: str, model: ModelSpec, dataset: DataSpec, workers: int, device: str) -> None:
    """The embedder recipe trains an adapter on plans in one process; the others never do."""
    if recipe != "embedder":
        if model.kind == "adapter":
            raise InvalidArgument(f"model.kind: the adapter is trained by recipe = embedder, not {recipe}",
                                  field="model.kind", expected="mlp | transformer")
        if dataset.kind == "approved":
            raise InvalidArgument(f"dataset.kind: approved plans are data for recipe = embedder, not {recipe}",
                                  field="dataset.kind", expected="synthetic | file")
        return
    if model.kind != "adapter":
        raise InvalidArgument(f"model.kind: recipe = embedder trains an adapter, not {model.kind!r}",
                              field="model.kind", expected="adapter (or leave [model] out)")
    if dataset.kind == "synthetic" or (dataset.path or "").endswith((".csv", ".npz")):
        raise InvalidArgument("dataset.kind: recipe = embedder learns from plans", field="dataset.kind",
                              expected='approved, or kind = file with a .jsonl of {"request", "shape"} lines')
    if workers != 1:
        raise InvalidArgument(f"workers: recipe = embedder trains in one process, got {workers}",
                              field="workers", expected="1")
    if device != "cpu":
        raise InvalidArgument("device: recipe = embedder runs on the CPU", field="device", expected="cpu")


def _model(d: Any) -> ModelSpec:
    if not isinstance(d, dict):
        raise InvalidArgument("model: expected a table", field="model", expected="kind, hidden, layers, ...")
    _only(d, "model.", ("kind", "hidden", "layers", "heads", "vocab"))
    kind = d.get("kind", "mlp")
    if kind not in MODEL_KINDS:
        raise InvalidArgument(f"model.kind: unknown model {kind!r}", field="model.kind",
                              expected=" | ".join(MODEL_KINDS))
    m = ModelSpec(kind=kind, hidden=_int(d, "hidden", ADAPTER_RANK if kind == "adapter" else 64, lo=1, hi=65536,
                                         p="model."),
                  layers=_int(d, "layers", 2, lo=1, hi=256, p="model."),
                  heads=_int(d, "heads", 2, lo=1, hi=256, p="model."),
                  vocab=_int(d, "vocab", 32, lo=2, hi=1 << 20, p="model."))
    if kind == "transformer" and m.hidden % m.heads:
        raise InvalidArgument(f"model.heads: {m.heads} does not divide model.hidden = {m.hidden}",
                              field="model.heads", expected=f"a divisor of {m.hidden}")
    return m


def _dataset(d: Any, base: Path | None) -> DataSpec:
    if not isinstance(d, dict):
        raise InvalidArgument("dataset: expected a table", field="dataset",
                              expected="kind = synthetic, or kind = file with a path")
    _only(d, "dataset.", ("kind", "path", "samples", "features", "classes", "seed"))
    kind = d.get("kind", "file" if "path" in d else None)
    if kind is None:
        raise InvalidArgument("dataset.kind: missing", field="dataset.kind", expected=" | ".join(DATA_KINDS))
    if kind not in DATA_KINDS:
        raise InvalidArgument(f"dataset.kind: unknown dataset kind {kind!r}", field="dataset.kind",
                              expected=" | ".join(DATA_KINDS))
    if kind == "approved":
        extra = sorted(set(d) - {"kind"})
        if extra:
            raise InvalidArgument(f"dataset.{extra[0]}: approved plans are read from the state directory",
                                  field=f"dataset.{extra[0]}", expected="only kind = approved")
        return DataSpec(kind="approved")
    if kind == "synthetic":
        if "path" in d:
            raise InvalidArgument("dataset.path: a synthetic dataset has no path", field="dataset.path",
                                  expected="kind = file to read a path")
        return DataSpec(kind=kind, samples=_int(d, "samples", 4096, lo=2, hi=100_000_000, p="dataset."),
                        features=_int(d, "features", 16, lo=1, hi=1_000_000, p="dataset."),
                        classes=_int(d, "classes", 4, lo=2, hi=1_000_000, p="dataset."),
                        seed=_int(d, "seed", 0, lo=0, hi=2**31 - 1, p="dataset."))
    extra = sorted(set(d) & {"samples", "features", "classes", "seed"})
    if extra:
        raise InvalidArgument(f"dataset.{extra[0]}: set by the file itself", field=f"dataset.{extra[0]}",
                              expected="only kind and path for a file dataset")
    path = d.get("path")
    if not isinstance(path, str) or not path.strip():
        raise InvalidArgument("dataset.path: missing", field="dataset.path",
                              expected=f"a data file ({', '.join(DATA_SUFFIXES)})")
    p = Path(path).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    if p.suffix.lower() not in DATA_SUFFIXES:
        raise InvalidArgument(f"dataset.path: unknown data format {p.suffix or '(no suffix)'!r}",
                              field="dataset.path", expected=", ".join(DATA_SUFFIXES))
    if not p.is_file():
        raise InvalidArgument(f"dataset.path: no such file {str(p)!r}", field="dataset.path",
                              expected="an existing data file")
    return DataSpec(kind="file", path=str(p.resolve()))


def _demand(d: Any, workers: int, device: str) -> Demand:
    if not isinstance(d, dict):
        raise InvalidArgument("demand: expected a table", field="demand", expected="cores, memory_bytes, gpus")
    _only(d, "demand.", ("cores", "memory_bytes", "gpus"))
    cores = _float(d, "cores", float(workers), lo=0.01, hi=1e6, p="demand.")
    mem = _int(d, "memory_bytes", WORKER_MEMORY_BYTES * workers, lo=1 << 20, hi=1 << 50, p="demand.")
    gpus = _int(d, "gpus", workers if device == "gpu" else 0, lo=0, hi=4096, p="demand.")
    if device == "gpu" and gpus == 0:
        raise InvalidArgument("demand.gpus: device = gpu needs at least one GPU", field="demand.gpus",
                              expected=">= 1 with device = gpu")
    if device == "cpu" and gpus:
        raise InvalidArgument(f"demand.gpus: {gpus} GPUs asked with device = cpu", field="demand.gpus",
                              expected="0, or device = gpu")
    return Demand(cores=cores, memory_bytes=mem, gpus=gpus)


def _only(d: dict, prefix: str, known: tuple[str, ...]) -> None:
    for k in d:
        if k not in known:
            raise InvalidArgument(f"{prefix}{k}: unknown field", field=f"{prefix}{k}",
                                  expected="one of " + ", ".join(known))


def _int(d: dict, key: str, default: int, *, lo: int, hi: int, p: str = "") -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgument(f"{p}{key}: expected an integer, got {v!r}", field=f"{p}{key}",
                              expected=f"an integer in [{lo}, {hi}]")
    if not lo <= v <= hi:
        raise InvalidArgument(f"{p}{key}: {v} is out of range", field=f"{p}{key}",
                              expected=f"an integer in [{lo}, {hi}]")
    return v


def _float(d: dict, key: str, default: float, *, lo: float, hi: float, p: str = "") -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InvalidArgument(f"{p}{key}: expected a number, got {v!r}", field=f"{p}{key}",
                              expected=f"a number in ({lo}, {hi}]")
    if not lo < v <= hi:
        raise InvalidArgument(f"{p}{key}: {v} is out of range", field=f"{p}{key}",
                              expected=f"a number in ({lo}, {hi}]")
    return float(v)


def _slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:64]
    return s or "train"
