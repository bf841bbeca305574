import json


def load_settings(path):
    """Settings from a JSON file; host defaults to 'localhost' and port to 8080."""
    with open(path) as f:
        data = json.load(f)
    return {"host": data.get("host", "localhost"), "port": data["port"]}
