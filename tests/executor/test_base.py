from __future__ import annotations

import pytest

from llmos.errors import InvalidArgument
from llmos.executor.base import request_from_spec


def test_spec_becomes_a_validated_request():
    req = request_from_spec({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
                             "temperature": 0.5, "stop": "\n", "seed": 3}, owner="a", priority=-2,
                            request_id="r1")
    assert req.owner == "a" and req.priority == -2 and req.request_id == "r1"
    assert req.params.max_tokens == 5 and req.params.stop == ("\n",) and req.params.seed == 3


@pytest.mark.parametrize("spec, field", [
    ({"prompt": "x", "temperature": 9}, "spec.temperature"),
    ({"prompt": "x", "colour": "red"}, "spec.colour"),
    ({"prompt": "x", "messages": [{"role": "user", "content": "y"}]}, "spec.messages"),
    ({}, "spec.messages"),
    ({"prompt": "x", "seed": "s"}, "spec.seed"),
    ({"prompt": "x", "max_tokens": 0}, "spec.max_tokens"),
    ({"messages": [{"role": "king", "content": "y"}]}, "spec.messages[0].role"),
    ({"prompt": "x", "model": 5}, "spec.model"),
])
def test_bad_specs_name_the_field(spec, field):
    with pytest.raises(InvalidArgument) as e:
        request_from_spec(spec, owner="a", priority=0)
    assert e.value.field == field and e.value.message.startswith("spec")
