"""CORS policy (WORKERS.md §3.8)."""

from __future__ import annotations

from actors.http.cors import CorsPolicy, origin_of
from manifests.blocks.http import HttpCors


def as_dict(headers: list[tuple[str, str]]) -> dict[str, str]:
    return dict(headers)


def test_absent_is_permissive() -> None:
    p = CorsPolicy(None)
    assert as_dict(p.preflight_headers("http://x")) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "*",
        "access-control-allow-headers": "*",
    }
    assert as_dict(p.response_headers(None))["access-control-allow-origin"] == "*"


def test_empty_or_star_origins_mean_any() -> None:
    assert CorsPolicy(HttpCors()).any_origin
    assert CorsPolicy(HttpCors(("http://a", "*"))).any_origin


def test_exact_origin_list_and_methods() -> None:
    p = CorsPolicy(HttpCors(("http://localhost:3000", "bad origin"), ("get", "POST")))
    ok = as_dict(p.preflight_headers("http://localhost:3000"))
    assert ok["access-control-allow-origin"] == "http://localhost:3000"
    assert ok["access-control-allow-methods"] == "GET, POST"
    assert ok["access-control-allow-headers"] == "*"
    assert "vary" in ok
    denied = as_dict(p.preflight_headers("http://evil.example"))
    assert "access-control-allow-origin" not in denied
    assert "access-control-allow-origin" not in as_dict(p.response_headers("http://evil"))
    assert (
        as_dict(p.response_headers("http://localhost:3000"))["access-control-allow-origin"]
        == "http://localhost:3000"
    )
    assert "access-control-allow-credentials" not in ok


def test_preflight_detection() -> None:
    acrm = [(b"access-control-request-method", b"POST")]
    assert CorsPolicy.is_preflight("OPTIONS", acrm)
    assert not CorsPolicy.is_preflight("OPTIONS", [])
    assert not CorsPolicy.is_preflight("GET", acrm)
    assert origin_of([(b"origin", b"http://a")]) == "http://a"
    assert origin_of([]) is None
