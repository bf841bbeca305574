import subprocess
import sys

import pytest

import llmos


def test_version_is_a_string():
    assert isinstance(llmos.__version__, str) and llmos.__version__.count(".") == 2


@pytest.mark.parametrize("name", llmos.__all__)
def test_every_public_name_resolves(name):
    assert getattr(llmos, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        llmos.no_such_thing  # noqa: B018


def test_import_is_cheap():
    # importing the package must not pull in the engine, kernel or API
    code = "import sys, llmos; print(sorted(m for m in sys.modules if m.startswith(('llama_cpp', 'llmos.kernel', 'fastapi'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
