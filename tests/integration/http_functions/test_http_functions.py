"""HTTP-invoked functions end to end (PROTOCOL.md §10, WORKERS.md §4): a real ``iii-supervisor
up`` running the ``iii-http-functions`` actor with the SDK suite's security settings (allowlist
``localhost``/``127.0.0.1``, private IPs and plain http allowed), official SDK 0.23 workers
registering ``HttpInvocationConfig`` functions and calling them, and a real local endpoint
(tests/integration/http_functions/endpoint.py) that checks the bearer token, the API key and the
HMAC signature itself."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from iii_helpers.http import HttpAuthApiKey, HttpAuthBearer, HttpAuthHmac, HttpInvocationConfig
from websockets.sync.client import connect

from tests.integration.http_functions.conftest import (
    SECURITY,
    call,
    failure,
    fresh,
    listed,
    refused_in_log,
    register,
    validated,
)
from tests.integration.http_functions.endpoint import (
    ENV,
    SLOW_SECONDS,
    Endpoint,
    RawProbe,
    make_certificate,
)
from tests.support import (
    EngineProcess,
    WorkerProcess,
    client_fixture,
    engine_fixture,
    require_sdk025,
    wait_for,
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path] | None:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def engine(
    tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path] | None
) -> Iterator[EngineProcess]:
    config = {"workers": [{"name": "iii-http-functions", "config": {"security": SECURITY}}]}
    env = {**ENV, "SSL_CERT_FILE": str(certificate[0])} if certificate else ENV
    yield from engine_fixture(tmp_path_factory.mktemp("httpfn"), config, env=env)


@pytest.fixture(scope="module")
def owner(engine: EngineProcess) -> Iterator[Any]:
    """The worker that registers the external functions."""
    yield from client_fixture(engine.url, "ext-owner")


@pytest.fixture(scope="module")
def caller(engine: EngineProcess) -> Iterator[Any]:
    """Another worker, which calls them."""
    yield from client_fixture(engine.url, "ext-caller")


# -- the acceptance points ------------------------------------------------------------------------


def test_a_local_endpoint_registered_as_a_function_is_callable_from_an_sdk_worker(
    endpoint: Endpoint, owner: Any, caller: Any
) -> None:
    function_id, _ = register(
        owner, caller, "echo", endpoint.url("/echo"), headers={"x-team": "billing"}
    )
    row = listed(caller)[function_id]
    assert row["worker_name"] == "ext-owner"  # owned by the worker that registered it

    result = call(caller, function_id, {"order": 42, "items": ["a", "b"]})

    assert result["method"] == "POST"
    assert {"order": 42, "items": ["a", "b"]}.items() <= result["got"].items()
    assert isinstance(result["got"]["_caller_worker_id"], str)  # the caller's id, as upstream
    seen = endpoint.requests_to("/echo")[-1]
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["x-iii-function-path"] == function_id
    assert uuid.UUID(seen.headers["x-iii-invocation-id"])
    assert abs(int(seen.headers["x-iii-timestamp"]) - time.time()) < 30
    assert seen.headers["x-team"] == "billing"
    assert seen.headers["content-length"] == str(len(seen.body))
    assert "transfer-encoding" not in seen.headers and "expect" not in seen.headers


def test_a_call_right_after_the_registration_finds_the_function(
    endpoint: Endpoint, owner: Any
) -> None:
    # Upstream validates a registration before it reads the next frame; here the call waits.
    function_id = fresh("at-once")
    owner.register_function(function_id, HttpInvocationConfig(url=endpoint.url("/echo")))
    assert call(owner, function_id, {"now": True})["got"]["now"] is True


def test_the_hmac_signature_is_verified_by_the_endpoint(
    endpoint: Endpoint, owner: Any, caller: Any
) -> None:
    signed, _ = register(
        owner, caller, "signed", endpoint.url("/hmac"), auth=HttpAuthHmac(secret_key="HF_SECRET")
    )
    result = call(caller, signed, {"amount": 1250, "note": "ünïcode"})
    assert result["verified"] == "/hmac"
    assert endpoint.requests_to("/hmac")[-1].verdict == "ok"

    unsigned, _ = register(owner, caller, "unsigned", endpoint.url("/hmac"))
    err = failure(caller, unsigned)
    assert err.code == "unauthorized"  # the endpoint's own error body, surfaced
    assert "bad signature" in err.message


def test_an_https_endpoint_is_called_with_its_certificate_verified(
    owner: Any, caller: Any, certificate: tuple[Path, Path] | None
) -> None:
    if certificate is None:
        pytest.skip("openssl is needed to make the test certificate")
    secure = Endpoint(tls=certificate)
    try:
        signed, _ = register(
            owner,
            caller,
            "tls",
            secure.url("/hmac", host="localhost"),
            auth=HttpAuthHmac(secret_key="HF_SECRET"),
        )
        for n in range(3):
            assert call(caller, signed, {"n": n})["got"]["n"] == n
        assert [s.verdict for s in secure.requests_to("/hmac")] == ["ok"] * 3
    finally:
        secure.close()


def test_an_untrusted_certificate_fails_with_http_request_failed(
    owner: Any, caller: Any, certificate: tuple[Path, Path] | None, tmp_path: Path
) -> None:
    stranger = make_certificate(tmp_path) if certificate is not None else None
    if stranger is None:
        pytest.skip("openssl is needed to make the test certificate")
    secure = Endpoint(tls=stranger)  # signed by nobody the engine trusts
    try:
        function_id, _ = register(owner, caller, "untrusted", secure.url("/echo", "localhost"))
        err = failure(caller, function_id)
        assert err.code == "http_request_failed"
        assert "CERTIFICATE_VERIFY_FAILED" in err.message
        assert secure.requests_to("/echo") == []
    finally:
        secure.close()


def test_a_url_outside_the_allowlist_is_refused_with_url_validation_failed(
    engine: EngineProcess, owner: Any, caller: Any
) -> None:
    function_id = fresh("outside")
    owner.register_function(function_id, HttpInvocationConfig(url="http://example.com/hook"))

    line = refused_in_log(engine, function_id)
    assert line["code"] == "url_validation_failed"
    assert line["reason"].startswith("URL not in allowlist")
    assert "example.com" in line["reason"]
    assert function_id not in listed(caller)
    assert failure(caller, function_id).code == "function_not_found"


def test_a_slow_endpoint_times_out_with_http_request_failed(
    engine: EngineProcess, endpoint: Endpoint, owner: Any, caller: Any
) -> None:
    function_id, _ = register(owner, caller, "slow", endpoint.url("/slow"), timeout_ms=300)
    wait_for(lambda: validated(engine, function_id), 20.0)  # time the call alone
    started = time.monotonic()
    err = failure(caller, function_id)
    elapsed = time.monotonic() - started
    assert err.code == "http_request_failed"
    assert "timed out after 300 ms" in err.message
    assert elapsed < SLOW_SECONDS  # cut at the timeout, not at the endpoint's answer


def test_a_slow_endpoint_does_not_hold_up_other_calls(
    engine: EngineProcess, endpoint: Endpoint, owner: Any, caller: Any
) -> None:
    slow, _ = register(owner, caller, "slow-ok", endpoint.url("/slow"), timeout_ms=10_000)
    fast, _ = register(owner, caller, "fast", endpoint.url("/echo"))
    wait_for(lambda: validated(engine, slow) and validated(engine, fast), 20.0)
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(call, caller, slow, {"a": 1})
        wait_for(lambda: endpoint.requests_to("/slow"), 5.0)  # the slow request is out
        started = time.monotonic()
        assert call(caller, fast, {"b": 2})["got"]["b"] == 2
        assert time.monotonic() - started < SLOW_SECONDS / 2
        assert not late.done()
        assert late.result(timeout=10) == {"late": True}


# -- auth ---------------------------------------------------------------------------------------


def test_bearer_and_api_key_credentials_come_from_the_engine_environment(
    endpoint: Endpoint, owner: Any, caller: Any
) -> None:
    bearer, _ = register(
        owner, caller, "bearer", endpoint.url("/bearer"), auth=HttpAuthBearer(token_key="HF_TOKEN")
    )
    keyed, _ = register(
        owner,
        caller,
        "apikey",
        endpoint.url("/apikey"),
        auth=HttpAuthApiKey(header="X-Api-Key", value_key="HF_API_KEY"),
    )
    assert call(caller, bearer, {"a": 1})["verified"] == "/bearer"
    assert call(caller, keyed, {"a": 1})["verified"] == "/apikey"
    assert endpoint.requests_to("/bearer")[-1].verdict == "ok"
    assert endpoint.requests_to("/apikey")[-1].verdict == "ok"


def test_an_auth_variable_missing_from_the_engine_environment_drops_the_registration(
    engine: EngineProcess, endpoint: Endpoint, owner: Any, caller: Any
) -> None:
    function_id = fresh("nokey")
    owner.register_function(
        function_id,
        HttpInvocationConfig(
            url=endpoint.url("/bearer"), auth=HttpAuthBearer(token_key="HF_NOT_SET")
        ),
    )
    line = refused_in_log(engine, function_id)
    assert "HF_NOT_SET" in line["reason"] and "not set" in line["reason"]
    assert function_id not in listed(caller)


# -- response mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        ("/text", "invalid_response", "Failed to parse response body as JSON"),
        ("/error-json", "out_of_stock", "No more widgets"),
        ("/error-bad", "http_error", "HTTP request failed"),
        ("/error-plain", "http_error", "HTTP 502 Bad Gateway"),
        ("/truncated", "http_response_failed", "Failed to read the response of"),
    ],
)
def test_error_replies_map_to_their_codes(
    endpoint: Endpoint, owner: Any, caller: Any, path: str, code: str, message: str
) -> None:
    function_id, _ = register(owner, caller, "mapped", endpoint.url(path))
    err = failure(caller, function_id)
    assert err.code == code
    assert err.message.startswith(message)


def test_empty_redirect_and_read_to_eof_replies_are_successes(
    endpoint: Endpoint, owner: Any, caller: Any
) -> None:
    empty, _ = register(owner, caller, "empty", endpoint.url("/empty"))
    assert call(caller, empty, {"a": 1}) is None

    before = len(endpoint.requests_to("/echo"))
    moved, _ = register(owner, caller, "moved", endpoint.url("/redirect"))
    assert call(caller, moved, {"a": 1}) is None  # 3xx: not followed, no JSON body → null
    assert len(endpoint.requests_to("/echo")) == before

    eof, _ = register(owner, caller, "eof", endpoint.url("/eof", host="localhost"))
    for n in range(3):  # no reuse of a connection the endpoint closed
        assert call(caller, eof, {"n": n})["got"]["n"] == n


def test_any_json_payload_is_sent_as_it_is(endpoint: Endpoint, owner: Any, caller: Any) -> None:
    function_id, _ = register(owner, caller, "anyjson", endpoint.url("/echo"))
    for payload in ([1, "two", {"three": 3}], "just text", 7, None):
        assert call(caller, function_id, payload)["got"] == payload
    assert endpoint.requests_to("/echo")[-1].body == b"null"


def test_each_request_reaches_a_single_read_probe_whole(owner: Any, caller: Any) -> None:
    probe = RawProbe()
    try:
        function_id, _ = register(owner, caller, "probe", probe.url())
        for n in range(20):
            payload = {"n": n, "pad": "x" * 300}
            assert call(caller, function_id, payload) == {"received": True}
            assert probe.bodies[-1] is not None, "the body did not come with the headers"
            assert payload.items() <= probe.bodies[-1].items()
    finally:
        probe.close()


def test_every_method_sends_the_json_body(endpoint: Endpoint, owner: Any, caller: Any) -> None:
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        function_id, _ = register(
            owner, caller, method.lower(), endpoint.url("/echo"), method=method
        )
        result = call(caller, function_id, {"m": method})
        assert result["method"] == method
        assert result["got"]["m"] == method


def test_an_unreachable_endpoint_fails_with_http_request_failed(owner: Any, caller: Any) -> None:
    function_id, _ = register(owner, caller, "down", "http://127.0.0.1:9/nothing-listens")
    err = failure(caller, function_id)
    assert err.code == "http_request_failed"
    assert "127.0.0.1:9" in err.message


# -- lifetime -------------------------------------------------------------------------------------


def test_unregistering_removes_the_function(endpoint: Endpoint, owner: Any, caller: Any) -> None:
    function_id, ref = register(owner, caller, "gone", endpoint.url("/echo"))
    ref.unregister()
    wait_for(lambda: function_id not in listed(caller), 10.0)
    assert failure(caller, function_id).code == "function_not_found"


OWNER_SCRIPT = """
import os, time
from iii import InitOptions, register_worker
from iii_helpers.http import HttpInvocationConfig

w = register_worker(os.environ["III_URL"], InitOptions(worker_name="ext-short", otel={"enabled": False}))
w.register_function(os.environ["FUNCTION"], HttpInvocationConfig(url=os.environ["TARGET"]))
while True:
    time.sleep(1)
"""


def test_the_registering_workers_departure_removes_the_function_and_another_may_take_it(
    engine: EngineProcess, endpoint: Endpoint, owner: Any, caller: Any, tmp_path: Path
) -> None:
    function_id = fresh("owned")
    worker = WorkerProcess(
        OWNER_SCRIPT, tmp_path, engine.url, FUNCTION=function_id, TARGET=endpoint.url("/echo")
    )
    try:
        wait_for(lambda: function_id in listed(caller), 15.0)
        # The id is leased to its owner: another worker's registration is refused.
        owner.register_function(function_id, HttpInvocationConfig(url=endpoint.url("/empty")))
        assert call(caller, function_id, {"a": 1})["verified"] == "/echo"
    finally:
        worker.stop()
    wait_for(lambda: function_id not in listed(caller), 10.0)


def test_a_malformed_invocation_is_dropped_and_the_connection_keeps_serving(
    engine: EngineProcess, caller: Any
) -> None:
    bad = {
        "not-an-object": "http://127.0.0.1/x",
        "no-url": {"method": "POST"},
        "bad-method": {"url": "http://127.0.0.1/x", "method": "TRACE"},
        "bad-timeout": {"url": "http://127.0.0.1/x", "timeout_ms": "soon"},
        "bad-headers": {"url": "http://127.0.0.1/x", "headers": {"x-a": 1}},
        "bad-auth": {"url": "http://127.0.0.1/x", "auth": {"type": "basic"}},
    }
    ids = {name: fresh(name) for name in bad}
    with connect(engine.url, max_size=None) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "workerregistered"
        register_worker = {"name": "raw", "namespace": "default"}
        ws.send(
            json.dumps(
                {
                    "type": "invokefunction",
                    "function_id": "engine::workers::register",
                    "data": register_worker,
                    "action": {"type": "void"},
                }
            )
        )
        for name, invocation in bad.items():
            ws.send(
                json.dumps({"type": "registerfunction", "id": ids[name], "invocation": invocation})
            )
        reasons = {name: refused_in_log(engine, ids[name])["reason"] for name in bad}
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}
    assert "`invocation`: expected an object" in reasons["not-an-object"]
    assert "`invocation.url` is required" in reasons["no-url"]
    assert "unsupported method 'TRACE'" in reasons["bad-method"]
    assert "`invocation.timeout_ms`" in reasons["bad-timeout"]
    assert "`invocation.headers.x-a`" in reasons["bad-headers"]
    assert "unknown auth type 'basic'" in reasons["bad-auth"]
    assert not set(ids.values()) & set(listed(caller))


def test_workers_cannot_call_the_actors_functions_directly(caller: Any) -> None:
    payload = {"function_id": "x", "invocation": {"url": "http://127.0.0.1:9/"}, "data": {}}
    for function_id in ("iii-http-functions::invoke", "iii-http-functions::register"):
        err = failure(caller, function_id, payload)
        assert err.code == "FORBIDDEN"
    assert "iii-http-functions::invoke" not in listed(caller)  # internal: hidden by default


SDK025_SCRIPT = """
import json, os, time
from iii import InitOptions, register_worker
from iii_helpers.http import HttpAuthHmac, HttpInvocationConfig

w = register_worker(os.environ["III_URL"], InitOptions(worker_name="ext-025", otel={"enabled": False}))
fid = os.environ["FUNCTION"]
w.register_function(
    fid, HttpInvocationConfig(url=os.environ["TARGET"], auth=HttpAuthHmac(secret_key="HF_SECRET"))
)
deadline = time.monotonic() + 20
while True:
    try:
        result = w.trigger({"function_id": fid, "payload": {"from": "0.25"}, "timeout_ms": 5000})
        print("RESULT " + json.dumps(result), flush=True)
        break
    except Exception as exc:  # not registered yet: the engine answers function_not_found
        if time.monotonic() > deadline:
            print("GAVE UP " + repr(exc), flush=True)
            break
        time.sleep(0.1)
while True:
    time.sleep(1)
"""


def test_an_sdk_025_worker_registers_and_calls_its_own_http_function(
    engine: EngineProcess, endpoint: Endpoint, caller: Any, tmp_path: Path
) -> None:
    function_id = fresh("sdk025")
    worker = WorkerProcess(
        SDK025_SCRIPT,
        tmp_path,
        engine.url,
        python=require_sdk025(),
        FUNCTION=function_id,
        TARGET=endpoint.url("/hmac"),
    )
    try:
        line = wait_for(
            lambda: next(
                (x for x in worker.output().splitlines() if x.startswith(("RESULT", "GAVE"))),
                None,
            ),
            30.0,
        )
        assert line.startswith("RESULT "), worker.output()
        result = json.loads(line.removeprefix("RESULT "))
        assert result["verified"] == "/hmac" and result["got"]["from"] == "0.25"
        assert listed(caller)[function_id]["worker_name"] == "ext-025"
        # the endpoint was reached through the engine, not run inside the worker
        assert endpoint.requests_to("/hmac")[-1].json()["from"] == "0.25"
    finally:
        worker.stop()
