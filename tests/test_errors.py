import sqlite3

import httpx
import pydantic
import pytest

from llmos import errors as E


def test_tree_shape():
    assert issubclass(E.StateDirError, E.ConfigError)
    assert issubclass(E.InvalidArgument, E.SyscallError)
    assert issubclass(E.SyscallError, E.KernelError)
    assert issubclass(E.RemoteUnavailable, E.RemoteError)
    assert issubclass(E.NeedsConfirmation, E.ToolError)
    for name in E.__all__:
        obj = getattr(E, name)
        if isinstance(obj, type):
            assert issubclass(obj, E.LLMOSError)


def test_every_class_is_drawn_in_the_docstring():
    for name in E.__all__:
        obj = getattr(E, name)
        if isinstance(obj, type):
            assert name in E.__doc__, name


def test_to_dict_carries_field_and_expectation():
    d = E.InvalidArgument("priority: out of range", field="priority", expected="-20..19").to_dict()
    assert d == {"error": "invalid_argument", "message": "priority: out of range",
                 "field": "priority", "expected": "-20..19"}
    assert E.Busy("queue full", retry_after=2).to_dict()["retry_after"] == 2


@pytest.mark.parametrize("exc, cls", [
    (PermissionError(13, "Permission denied", "/etc/shadow"), E.PermissionDenied),
    (FileNotFoundError(2, "No such file", "x.txt"), E.NotFound),
    (sqlite3.OperationalError("disk I/O error"), E.JournalError),
    (httpx.ConnectError("refused"), E.RemoteUnavailable),
    (ValueError("bad"), E.InvalidArgument),
    (RuntimeError("boom"), E.LLMOSError),
])
def test_map_foreign(exc, cls):
    out = E.map_foreign(exc, context="ctx")
    assert isinstance(out, cls)
    assert out.__cause__ is exc
    assert "\n" not in str(out) and str(out).startswith("ctx: ")


def test_map_foreign_pydantic_names_the_field():
    class M(pydantic.BaseModel):
        pid: int

    with pytest.raises(pydantic.ValidationError) as ei:
        M(pid="x")
    out = E.map_foreign(ei.value)
    assert isinstance(out, E.InvalidArgument) and out.field == "pid"


def test_map_foreign_keeps_project_errors():
    e = E.NotFound("no pid 4")
    assert E.map_foreign(e) is e


@pytest.mark.parametrize("err", [
    E.InvalidArgument("pid: bad", field="pid", expected="an int"),
    E.PermissionDenied("no", reason="lacks proc.kill"),
    E.Busy("full", retry_after=2.5),
    E.NeedsConfirmation("risky", reason="destructive"),
    E.NotFound("no process 3", hint="run llmos ps"),
    E.KernelError("run failed"),
])
def test_error_from_dict_round_trips_every_field(err):
    back = E.error_from_dict(err.to_dict())
    assert type(back) is type(err) and back.to_dict() == err.to_dict()


def test_error_from_dict_reads_the_openai_envelope_and_keeps_unknown_codes():
    back = E.error_from_dict({"error": {"message": "bad field", "type": "invalid_request_error",
                                        "code": "invalid_argument", "param": "messages"}}, status=400)
    assert isinstance(back, E.InvalidArgument) and back.field == "messages" and back.status == 400
    odd = E.error_from_dict({"error": "too_large", "message": "big"})
    assert type(odd) is E.LLMOSError and odd.code == "too_large" and odd.to_dict()["error"] == "too_large"
    assert E.error_from_dict("<html>oops</html>", status=502).message.startswith("HTTP 502")


def test_one_codec_the_sdk_and_the_journal_reader_use_it():
    from llmos.kernel.result import error_from_dict as kernel_codec
    from llmos.sdk.errors import DaemonError, from_body

    assert kernel_codec is E.error_from_dict
    err = from_body(429, E.Busy("full", retry_after=3.0).to_dict())
    assert isinstance(err, E.Busy) and err.retry_after == 3.0 and err.status == 429
    odd = from_body(413, {"error": "too_large", "message": "big"})
    assert isinstance(odd, DaemonError) and odd.status == 413 and odd.code == "too_large"
