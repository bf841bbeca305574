import json

from settings import load_settings


def test_full(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"host": "example.org", "port": 9000}))
    assert load_settings(p) == {"host": "example.org", "port": 9000}


def test_defaults(tmp_path):
    p = tmp_path / "s.json"
    p.write_text("{}")
    assert load_settings(p) == {"host": "localhost", "port": 8080}
