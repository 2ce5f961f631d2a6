"""Fuzzing: schemathesis drives every operation of the OpenAPI spec, hypothesis sends tensors
of every shape and type; the server never answers 5xx."""

from __future__ import annotations

import base64
import json

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def test_no_operation_answers_a_server_error(served):
    # schemathesis' pytest plugin does not run under pytest 9; its strategies do.
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 15  # 12 model routes, health, readiness, metrics
    seen: dict[int, int] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case):
            response = case.call(base_url=served.url)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (case.as_curl_command(), response.text)
            if response.status_code >= 400:
                assert "error" in response.json()

        check()
    assert sum(seen.values()) >= 15 * 20 and {200, 400, 404} <= set(seen), seen


def test_spec_lists_every_tf_serving_route(served):
    paths = httpx.get(f"{served.url}/openapi.json").json()["paths"]
    for suffix in ("", "/versions/{version}", "/labels/{label}"):
        base = "/v1/models/{model_name}" + suffix
        assert base in paths and base + "/metadata" in paths
        assert base + ":predict" in paths and base + ":classify" in paths
    assert "/healthz" in paths and "/readyz" in paths
    assert "/monitoring/prometheus/metrics" in paths


leaf = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.integers(-300, 300),
    st.booleans(),
    st.text(max_size=5),
    st.none(),
    st.binary(max_size=40).map(lambda b: {"b64": base64.b64encode(b).decode()}),
)
tensor = st.recursive(leaf, lambda inner: st.lists(inner, min_size=0, max_size=4), max_leaves=40)
pixels = st.integers(1, 3).flatmap(
    lambda n: st.lists(
        st.lists(
            st.lists(
                st.lists(st.floats(0, 1, width=32), min_size=3, max_size=3),
                min_size=16,
                max_size=16,
            ),
            min_size=16,
            max_size=16,
        ),
        min_size=n,
        max_size=n,
    )
)


@given(
    body=st.one_of(
        st.fixed_dictionaries({"instances": tensor}),
        st.fixed_dictionaries({"inputs": tensor}),
        st.fixed_dictionaries({"instances": pixels}),
        st.fixed_dictionaries(
            {"signature_name": st.sampled_from(["serving_pixels", "x"]), "instances": pixels}
        ),
        st.fixed_dictionaries(
            {"examples": st.lists(st.dictionaries(st.text(max_size=3), tensor), max_size=3)}
        ),
    )
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_tensors_get_answers_or_400(served, body):
    verb = "classify" if "examples" in body else "predict"
    response = httpx.post(
        f"{served.url}/v1/models/digits:{verb}", content=json.dumps(body), timeout=30
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]
    elif verb == "predict" and "instances" in body:
        assert len(response.json()["predictions"]) == len(body["instances"])
