"""Property-based tests of the bridge against its own OpenAPI document (schemathesis).

Bounded: 50 examples per mode, no deadline per example, a few seconds in all.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.rest.conftest import BridgeFactory
from tests.support.idp import DevIdp

schemathesis = pytest.importorskip("schemathesis")

from schemathesis import GenerationMode, checks  # noqa: E402

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_publish_conforms_to_its_openapi_document(
    bridge_factory: BridgeFactory, idp: DevIdp, mode: GenerationMode
) -> None:
    b = bridge_factory()
    schema = schemathesis.openapi.from_url(f"{b.url}/v1/openapi.json")
    operation = schema["/v1/publish"]["POST"]
    token = idp.token("alice")
    extra = [checks.negative_data_rejection] if mode is GenerationMode.NEGATIVE else []
    seen: set[int] = set()

    @settings(
        max_examples=50,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            base_url=b.url,
            headers={"Authorization": f"Bearer {token}"},
            checks=[*CHECKS, *extra],
            timeout=10,
        )
        seen.add(response.status_code)

    run()
    # The run reached the decision, not only the parser.
    assert seen & {202, 403, 400}
