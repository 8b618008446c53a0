"""The engine's compact span batches: what the actor makes of them is the Span object the
OTLP/JSON form gave, rows are stored in O(1) (eviction too), the trace index follows stores,
replacements and evictions, and collapse_spans hides spans from trees."""

from __future__ import annotations

import time
from typing import Any

from actors.observability.otlpjson import spans_of
from actors.observability.spanrows import SIZE, ShapeTable, engine_rows, shape_numbers, span_of
from actors.observability.spans import (
    SpanStore,
    collapse_rules,
    group_by,
    list_traces,
    public,
    trace_tree,
)
from supervisor.engine.tracing import SCOPE, compact_spans
from transport.messages import ErrorBody

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
EPOCH = 1_700_000_000_000_000_000


def tp(span: str) -> str:
    return f"00-{TRACE}-{span.ljust(16, '0')}-01"


def records() -> list[Any]:
    key = ("shop::pay", "default", "w-callee", "w-caller")
    return [
        (tp("a1"), None, key, 1.0, 1.5, None),
        (tp("b2"), "a1".ljust(16, "0"), ("engine::x", "default", None, None), 1.1, 1.2, None),
        (tp("c3"), "a1".ljust(16, "0"), key, 1.2, 1.3, ErrorBody("invocation_failed", "boom")),
    ]


def _attr(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


def otlp_of(recs: list[Any]) -> dict[str, Any]:
    """The OTLP/JSON ExportTraceServiceRequest the engine sent for these spans before the
    compact form (written out here as the reference the compact form must reproduce)."""
    out = []
    for t, parent, (fid, ns, callee, caller), started, ended, err in recs:
        attrs = [_attr("iii.function.id", fid), _attr("iii.namespace", ns)]
        if callee is not None:
            attrs.append(_attr("iii.worker.id", callee))
        if caller is not None:
            attrs.append(_attr("iii.caller.worker_id", caller))
        span: dict[str, Any] = {
            "traceId": t[3:35],
            "spanId": t[36:52],
            "name": f"call {fid}",
            "kind": 2,
            "startTimeUnixNano": str(EPOCH + int(started * 1e9)),
            "endTimeUnixNano": str(EPOCH + int(ended * 1e9)),
            "attributes": attrs,
            "status": {"code": 1, "message": ""},
        }
        if parent is not None:
            span["parentSpanId"] = parent
        if err is not None:
            span["attributes"] = [*attrs, _attr("iii.error.code", err.code)]
            span["status"] = {"code": 2, "message": err.message}
        out.append(span)
    scope = {"scope": {"name": SCOPE, "version": ""}, "spans": out}
    resource = {"attributes": [_attr("service.name", "iii")]}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [scope]}]}


def stores() -> tuple[SpanStore, SpanStore]:
    compact, otlp = SpanStore(max_spans=100), SpanStore(max_spans=100)
    compact.add_rows(engine_rows(compact_spans(records(), EPOCH, "iii")))
    for span in spans_of(otlp_of(records())):
        otlp.add(span)
    return compact, otlp


def test_compact_batches_give_the_span_objects_the_otlp_json_form_gave() -> None:
    compact, otlp = stores()
    assert [public(s) for s in compact.spans()] == [public(s) for s in otlp.spans()]
    assert [s["_kind"] for s in compact.spans()] == [2, 2, 2]  # the exporter's SpanKind


def test_every_trace_query_answers_alike_for_both_forms() -> None:
    compact, otlp = stores()
    queries: list[tuple[Any, Any]] = [
        (list_traces, {"include_internal": True}),
        (list_traces, {"name": "engine", "search_all_spans": True}),
        (list_traces, {"attributes": [["iii.error.code", "invocation_failed"]]}),
        (list_traces, {"status": "ok", "sort_by": "duration", "sort_order": "desc"}),
        (group_by, {"attribute": "iii.function.id"}),
    ]
    for fn, data in queries:
        assert fn(compact, data, now_ns=EPOCH) == fn(otlp, data, now_ns=EPOCH), data
    assert trace_tree(compact, {"trace_id": TRACE}) == trace_tree(otlp, {"trace_id": TRACE})
    (root,) = trace_tree(compact, {"trace_id": TRACE})["roots"]
    assert [c["span_id"][:2] for c in root["children"]] == ["b2", "c3"]


def test_unreadable_compact_rows_are_skipped_not_raised() -> None:
    body = compact_spans(records(), EPOCH, "iii")
    body["spans"] += [["short"], [tp("d4"), None, 99, 1, 2], "x", [tp("e5"), None, 0, "1", 2]]
    assert [r[1][:2] for r in engine_rows(body)] == ["a1", "b2", "c3"]
    assert engine_rows({"spans": "no"}) == []
    ok = rows(3)  # without errors: the whole-batch way, which skips the same rows
    body = compact_spans(
        [
            (f"00-{i:032x}-{i + 1:016x}-01", None, ("f", "default", None, None), i, i + 0.5, None)
            for i in range(3)
        ],
        0,
        "iii",
    )
    body["spans"] += [[tp("d4")[:-1], None, 0, 1, 2], [tp("e5"), None, 0, 1.5, 2]]
    assert engine_rows(body) == ok
    body["spans"].append([tp("f6"), None, 99, 1, 2])  # a bad shape: row by row, skipped there
    assert engine_rows(body) == ok


def test_shapes_are_shared_across_batches_and_pruned_when_unused() -> None:
    table = ShapeTable()
    one = engine_rows(compact_spans(records(), EPOCH, "iii"), table)
    two = engine_rows(compact_spans(records(), EPOCH, "iii"), table)
    assert [r[6] for r in one] == [r[6] for r in two] and len(table) == 2
    assert table.prune(shape_numbers(one[1:2])) == 1 and len(table) == 1
    again = engine_rows(compact_spans(records(), EPOCH, "iii"), table)
    assert again[1][6] == one[1][6] and again[0][6] not in (one[0][6], one[1][6])


def test_stored_engine_rows_are_not_tracked_by_the_garbage_collector() -> None:
    import gc

    rows = engine_rows(compact_spans(records(), EPOCH, "iii"))
    gc.collect()
    gc.collect()  # the error tuple inside a row first, then the row
    assert not any(gc.is_tracked(r) for r in rows)  # full collections skip them


def rows(n: int, start: int = 0) -> list[Any]:
    recs: list[Any] = [
        (f"00-{i:032x}-{i + 1:016x}-01", None, ("f", "default", None, None), i, i + 0.5, None)
        for i in range(start, start + n)
    ]
    return engine_rows(compact_spans(recs, 0, "iii"))


def test_eviction_at_capacity_drops_the_oldest_first() -> None:
    store = SpanStore(max_spans=50_000)
    store.add_rows(rows(50_000))
    batch = rows(20_000, start=50_000)
    t0 = time.process_time()
    store.add_rows(batch)
    per_span = (time.process_time() - t0) / 20_000
    assert len(store) == 50_000 and store.evicted == 20_000
    assert next(store.spans())["span_id"] == f"{20_000 + 1:016x}"
    # A dict popped from the front cost ~100 µs a span here; the deque well under 5 µs. CPU time
    # is reported, not asserted: timed assertions do not belong in the unit suite.
    print(f"[spans] eviction at capacity: {per_span * 1e6:.2f} µs of CPU per span")


def test_the_trace_index_follows_stores_replacements_and_evictions() -> None:
    store = SpanStore(max_spans=3)
    store.add_rows(rows(2))
    assert len(store.trace_ids()) == 2  # the index is built by this first query
    store.add_rows(rows(2, start=2))  # evicts trace 0
    assert store.trace_ids() == [f"{i:032x}" for i in (1, 2, 3)]
    pending = {**span_of(rows(1, start=3)[0]), "end_time_unix_nano": 0}
    del pending["_kind"]
    store.add(pending)  # the same span again replaces the stored one
    (again,) = store.trace(f"{3:032x}")
    assert again["end_time_unix_nano"] == 0 and len(store) == 3
    store.add_rows(rows(1, start=9))  # the oldest is trace 1 (trace 3 was stored again)
    assert sorted(store.trace_ids()) == [f"{i:032x}" for i in (2, 3, 9)]
    assert store.expire(now_ns=10**12, max_age_ns=1) == 3 and store.trace_ids() == []


def test_a_span_twice_in_one_batch_is_stored_once_the_later_row_last() -> None:
    """A batch of new spans is stored whole (one dict update); one holding the same span twice,
    or a span already stored, goes row by row: the later row replaces the earlier, at the end."""
    fresh = rows(3)
    store = SpanStore(max_spans=10)
    store.add_rows(fresh)
    assert len(store) == 3 and store.bytes == sum(r[SIZE] for r in fresh)
    again = rows(2, start=3)
    twice = [again[0], again[1], again[0][:4] + (0, *again[0][5:])]  # the first again, pending
    store.add_rows(iter(twice))
    assert len(store) == 5 and list(store.rows()) == [*fresh, again[1], twice[2]]
    assert store.bytes == sum(r[SIZE] for r in [*fresh, *again])
    store.add_rows([rows(1, start=8)[0], fresh[0]])  # one new, one stored: stored again
    assert list(store.rows())[-2:] == [rows(1, start=8)[0], fresh[0]] and len(store) == 6


def test_collapsed_spans_are_hidden_and_their_children_reparented() -> None:
    store = SpanStore(max_spans=100)
    store.add_rows(engine_rows(compact_spans(records(), EPOCH, "iii")))
    grand = {
        **span_of(rows(1)[0]),
        "trace_id": TRACE,
        "span_id": "d4".ljust(16, "0"),
        "parent_span_id": "b2".ljust(16, "0"),
        "name": "db.query",
    }
    store.add(grand)
    plain = trace_tree(store, {"trace_id": TRACE})
    assert [c["span_id"][:2] for c in plain["roots"][0]["children"]] == ["b2", "c3"]
    hide = collapse_rules([("call engine::*", None)])
    (root,) = trace_tree(store, {"trace_id": TRACE}, collapse=hide)["roots"]
    assert sorted(c["span_id"][:2] for c in root["children"]) == ["c3", "d4"]
    other_service = collapse_rules([("call engine::*", "billing")])
    assert trace_tree(store, {"trace_id": TRACE}, collapse=other_service) == plain
    everything = collapse_rules([("*", None)])
    assert trace_tree(store, {"trace_id": TRACE}, collapse=everything) == {"roots": []}
