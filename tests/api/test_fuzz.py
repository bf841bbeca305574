"""Fuzz every documented operation from the OpenAPI document (schemathesis, in-process ASGI).

Zero 5xx and zero schema violations: every answer must be documented, match its
schema, and be JSON (or an event stream where that is documented). The example count
is bounded so the default tier stays fast. Two operations are left out because they
block by design: the event streams (open until the client leaves) and ``wait`` (up to
the caller's timeout); their error paths are covered in test_routes / test_events.

Every check runs except ``positive_data_acceptance``: what the kernel validates beyond
the document (a process spec per kind, a tool's own argument schema, a path inside
the agent's roots) cannot all be written as OpenAPI, so schema-valid input may still
get a clear 400 naming the field.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from llmos.api.app import create_app
from llmos.api.auth import TokenStore
from llmos.hal.fake import FakeHAL
from llmos.llm.fake import FakeEngine
from llmos.tools.registry import default_registry

EXAMPLES = 6            # per operation and mode; bounded so the default tier stays fast


@pytest.fixture(scope="module")
def api_schema(module_config):
    from schemathesis.python import asgi

    app = create_app(module_config, engines={"fake": FakeEngine(model="fake")}, tools=default_registry(),
                     hal=FakeHAL(), preload_models=False, allowed_hosts=("testserver",))  # its client's Host
    token = TokenStore(module_config.home).admin_token()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers={"Authorization": f"Bearer {token}"})
    schema = schema.exclude(path_regex=r"/events$").exclude(path_regex=r"/wait$")
    yield schema
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def admin(module_config):
    return {"Authorization": f"Bearer {TokenStore(module_config.home).admin_token()}"}


def test_openapi_fuzz(api_schema, admin):
    """Every operation, positive and negative examples; failures are gathered, then reported."""
    failures: list[str] = []
    ops = [r.ok() for r in api_schema.get_all_operations()]
    assert len(ops) >= 30
    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES if mode == GenerationMode.POSITIVE else EXAMPLES // 2, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
            def run(case):
                case.call_and_validate(headers=admin, excluded_checks=[positive_data_acceptance])

            try:
                run()
            except Unsatisfiable:        # nothing to make invalid (no parameters, no body)
                continue
            except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - gathered, reported together
                failures.append(f"{op.label} [{mode.value}]: {str(e)[:1500]}")
    assert not failures, "\n\n".join(failures)
