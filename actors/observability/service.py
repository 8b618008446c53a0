"""The ``iii-observability`` functions and trigger types over the stores (WORKERS.md §10.2–10.5).

Telemetry arrives through ``iii-observability::ingest`` (the SDKs' frames forwarded by the
listeners, the bus's own spans from its tracing hook); the function is registered only while
``enabled`` is true, so a disabled actor makes the engine drop telemetry without parsing it.
Logs written with ``engine::log::*`` land in the same log store as SDK logs.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any, Final

import structlog
import trio

from actors.observability.archive import TraceArchive
from actors.observability.console import apply_level
from actors.observability.export import OtlpExport, export_signals
from actors.observability.logs import LEVELS, LogStore, list_logs, log_record
from actors.observability.metrics import (
    MetricStore,
    WorkerCounts,
    engine_metrics,
    list_metrics,
    red_records,
)
from actors.observability.otlpjson import logs_of, metrics_of, spans_of
from actors.observability.settings import Settings
from actors.observability.spanrows import (
    END,
    SHAPES,
    TRACE,
    Row,
    engine_rows,
    is_internal_row,
    row_of,
    service_of,
    shape_numbers,
    span_of,
    status_of,
)
from actors.observability.spans import (
    SpanStore,
    collapse_rules,
    group_by,
    list_traces,
    trace_tree,
)
from actors.observability.watch import MetricWatch
from actors.runtime import Payload
from manifests.blocks.observability import ENGINE_SPANS_KIND, INGEST_FUNCTION_ID
from transport.client import BusClient, FunctionError, InvocationContext, TriggerBinding
from transport.tracecontext import current, format_traceparent, new_span_id, new_trace_id

__all__ = ["ObservabilityService"]

log = structlog.get_logger("iii-observability")
worker_log = structlog.get_logger("iii.worker")

TRACE_TICK: Final = 0.3  # §10.4: span activity is coalesced for 300 ms
DELIVERY_TRACES: Final = 4096  # trace ids of our own trace-trigger deliveries, remembered
ARCHIVE_EVERY: Final = 1.0
SWEEP_EVERY: Final = 60.0
SHAPES_KEPT: Final = 1024  # below this many span shapes, the sweep does not look for unused ones
STATS_TIMEOUT: Final = 5.0
RED_EXPORT_EVERY: Final = 5.0  # the bus's RED gauges go to the OTLP metric exporter this often
WORKERS_HOOK: Final = "iii-observability::on-workers-available"
_CONSOLE: Final = {"trace": "debug", "debug": "debug", "info": "info", "warn": "warning"}
_NOT_ENABLED: Final = ("memory_exporter_not_enabled", "The memory exporter is not enabled")


def now_ns() -> int:
    return time.time_ns()


def engine_version() -> str:
    from importlib import metadata  # only when asked: it is slow to import

    try:
        return metadata.version("iii-supervisor")
    except metadata.PackageNotFoundError:
        return "unknown"


class ObservabilityService:
    def __init__(self, client: BusClient, settings: Settings, *, rng: random.Random) -> None:
        self.client = client
        self.settings = settings
        self.rng = rng
        s = settings
        self.spans = (
            SpanStore(max_spans=s.memory_max_spans, max_bytes=s.memory_max_bytes)
            if s.memory
            else None
        )
        self.logs = (
            LogStore(max_count=s.logs_max_count, retention_seconds=s.logs_retention_seconds)
            if s.logs_enabled
            else None
        )
        self.metrics = (
            MetricStore(
                max_count=s.metrics_max_count, retention_seconds=s.metrics_retention_seconds
            )
            if s.metrics_enabled
            else None
        )
        self.archive = None
        if s.enabled and s.archive is not None:
            # Relative to the working directory, as upstream's ./data/observability/traces.
            self.archive = TraceArchive(
                Path(s.archive.directory).absolute(),
                max_disk_bytes=s.archive.max_disk_bytes,
                retention_seconds=s.archive.retention_seconds,
            )
        signals = export_signals(s)
        self.export = OtlpExport(s, signals=signals) if s.enabled and signals else None
        self.watch = MetricWatch(client, s.alerts, rollups=s.metrics_enabled, add_log=self.add_log)
        self._nursery: trio.Nursery | None = None
        self._ingesting = False
        self.workers = WorkerCounts()
        self.ingested = {"OTLP": 0, "MTRC": 0, "LOGS": 0, ENGINE_SPANS_KIND: 0}
        self.collapse = collapse_rules(s.collapse_spans)
        self._to_archive: list[Row] = []
        self._changed_traces: dict[str, Row] = {}  # trace id → a span of it
        self._trace_bindings: dict[str, TriggerBinding] = {}
        self._deliveries: dict[str, None] = {}  # traces that our trace-trigger deliveries made
        self._log_bindings: dict[str, TriggerBinding] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        if self.settings.level is not None:
            apply_level(self.settings.level)
        if self.archive is not None:
            await self.archive.open()
            if self.spans is not None:
                restored = await self.archive.newest(self.settings.memory_max_spans, now_ns())
                self.spans.add_rows(row_of(span) for span in restored)
                log.info("traces restored from the archive", spans=len(self.spans))
            nursery.start_soon(self._archive_loop)
        if self.export is not None:
            nursery.start_soon(self.export.run)
            if "metrics" in self.export.signals:
                nursery.start_soon(self._red_export_loop)
        nursery.start_soon(self._trace_loop)
        nursery.start_soon(self._sweep_loop)
        nursery.start_soon(self.watch.run, nursery)
        self.register()

    def rebuild_export(self, signals: tuple[str, ...]) -> None:
        """A settings change altered the exported signals (the log pipeline's rebuild tier)."""
        if self.export is not None:
            self.export.set_signals(signals)
        elif signals and self.settings.enabled and self._nursery is not None:
            self.export = OtlpExport(self.settings, signals=signals)
            self._nursery.start_soon(self.export.run)

    async def _red_export_loop(self) -> None:
        """The bus's RED metrics (engine::calls::stats) to the OTLP metric exporter, every
        ``RED_EXPORT_EVERY`` seconds; a failed read is skipped (the next one comes soon)."""
        assert self.export is not None
        start = now_ns()
        while True:
            await trio.sleep(RED_EXPORT_EVERY)
            try:
                stats = await self.client.invoke("engine::calls::stats", {}, timeout=STATS_TIMEOUT)
            except FunctionError as exc:
                log.debug("engine::calls::stats unavailable", code=exc.code)
                continue
            self.export.offer("metrics", red_records(stats, start_ns=start, now_ns=now_ns()))

    async def stop(self) -> None:
        if self.archive is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._flush_archive()
                await self.archive.close()

    def register_ingest(self) -> None:
        if not self._ingesting:
            self._ingesting = True
            # Inline: run in the client's reader, without a task per call (and its answer
            # written at the end of the reader's burst, without waking the writer): ingestion
            # never waits.
            self.client.register_inline(
                INGEST_FUNCTION_ID,
                self.ingest,
                description="Ingest OTLP/JSON telemetry (SDK frames, the engine's spans)",
                metadata={"internal": True},
            )

    def register(self) -> None:
        c = self.client
        if self.settings.enabled:
            self.register_ingest()
        for level in LEVELS:
            c.register_function(
                f"engine::log::{level}",
                self._log_fn(level),
                description=f"Write a {level} log record",
            )
        table = {
            "engine::logs::list": (self.logs_list, "List stored logs, newest first"),
            "engine::logs::clear": (self.logs_clear, "Clear stored logs"),
            "engine::traces::list": (self.traces_list, "List traces (one root span each)"),
            "engine::traces::tree": (self.traces_tree, "One trace as a tree of spans"),
            "engine::traces::group_by": (self.traces_group_by, "Group traces by an attribute"),
            "engine::traces::clear": (self.traces_clear, "Clear stored traces"),
            "engine::metrics::list": (self.metrics_list, "Engine and SDK metrics"),
            "engine::rollups::list": (self.rollups_list, "Metric rollups"),
            "engine::sampling::rules": (self.sampling_rules, "The sampling configuration"),
            "engine::health::check": (self.health_check, "Health of the telemetry pipeline"),
            "engine::alerts::list": (self.alerts_list, "Alert rules and their state"),
            "engine::alerts::evaluate": (self.alerts_evaluate, "Evaluate the alert rules"),
        }
        for fid, (fn, text) in table.items():
            c.register_function(fid, fn, description=text)
        c.register_trigger_type(
            "log",
            "Fires for every stored log record of a level (or all)",
            on_register=self._bind_log,
            on_unregister=self._unbind_log,
        )
        c.register_trigger_type(
            "trace",
            "Fires with the ids of the traces that changed in the last 300 ms",
            on_register=self._bind_trace,
            on_unregister=self._unbind_trace,
        )
        c.register_function(WORKERS_HOOK, self._workers_event, metadata={"internal": True})
        c.register_trigger("engine::workers-available", WORKERS_HOOK, {}, trigger_id=WORKERS_HOOK)

    # -- ingestion -----------------------------------------------------------------------------

    def ingest(self, data: Any, ctx: InvocationContext) -> None:
        """``iii-observability::ingest``, inline (the client runs it in the caller's trace
        context, as a handler task would be)."""
        p = Payload(INGEST_FUNCTION_ID, data)
        kind = p.str("kind")
        body = p.data.get("body")
        if kind not in self.ingested:
            raise p.error(f"`kind`: unknown variant `{kind}`, expected OTLP, MTRC, LOGS or SPANS")
        if not isinstance(body, dict):
            raise p.error("`body`: expected an OTLP/JSON export request object")
        if not self.settings.enabled:  # switched off at runtime: the live ingest gate
            return None
        self.ingested[kind] += 1
        if kind == ENGINE_SPANS_KIND:
            self.add_rows(engine_rows(body))
            return None
        now = now_ns()
        if kind == "OTLP":
            self.add_rows([row_of(span) for span in spans_of(body)])
        elif kind == "LOGS":
            for record in logs_of(body, now_ns=now):
                self.add_log(record, now)
        elif self.metrics is not None:
            records = metrics_of(body, now_ns=now)
            for record in records:
                self.metrics.add(record, now)
            self.watch.ingest_metrics(records, now)
            if self.export is not None:
                self.export.offer("metrics", records)
        return None

    def add_rows(self, rows: list[Row]) -> None:
        """Stored spans (spanrows.py): into the store, the archive's and the exporter's queues
        (finished ones; their Span objects made there) and the trace trigger's tick."""
        if self.spans is not None:
            self.spans.add_rows(rows)
        if self.archive is not None:
            self._to_archive.extend(r for r in rows if r[END])
        if self.export is not None:
            self.export.offer("traces", [span_of(r) for r in rows if r[END]])
        if self._trace_bindings:
            for row in rows:
                tid = row[TRACE]
                if tid not in self._deliveries and not is_internal_row(row):
                    self._changed_traces.setdefault(tid, row)

    def add_log(self, record: dict[str, Any], now: int) -> None:
        if self.logs is None:
            return
        ratio = self.settings.logs_sampling_ratio
        if ratio < 1.0 and self.rng.random() >= ratio:
            return
        self.logs.add(record, now)
        if self.export is not None:
            self.export.offer("logs", [record])
        if self._log_bindings:
            level = str(record.get("severity_text") or "").lower()
            for binding in list(self._log_bindings.values()):
                config = binding.config if isinstance(binding.config, dict) else {}
                wanted = str(config.get("level") or "all").lower()
                if wanted in ("all", level):
                    # §10.3: resolved in default, fire and forget, with the trigger metadata.
                    self.client.invoke_void(binding.function_id, record, metadata=binding.metadata)

    def _log_fn(self, level: str) -> Any:
        method = _CONSOLE.get(level, level)  # looked up per call: ``level`` may change

        async def log_fn(data: Any, ctx: InvocationContext) -> None:
            if self.logs is None:
                Payload(f"engine::log::{level}", data).str("message")
                return None
            now = now_ns()
            record = log_record(level, data, now_ns=now)
            if self.settings.logs_console_output:
                getattr(worker_log, method)(
                    record["body"],
                    service_name=record["service_name"],
                    **({"data": data["data"]} if "data" in data else {}),
                    **({"trace_id": record["trace_id"]} if record["trace_id"] else {}),
                )
            self.add_log(record, now)
            return None

        return log_fn

    # -- queries -------------------------------------------------------------------------------

    def _storage(self) -> dict[str, Any]:
        if self.archive is None:
            return {"enabled": False}
        return self.archive.status()

    def _span_store(self) -> SpanStore:
        if self.spans is None:
            raise FunctionError(*_NOT_ENABLED)
        return self.spans

    async def logs_list(self, data: Any, ctx: InvocationContext) -> Any:
        return list_logs(self.logs, data, now_ns=now_ns())

    async def logs_clear(self, data: Any, ctx: InvocationContext) -> Any:
        if self.logs is None:
            return {"success": True, "message": "No log storage initialized"}
        self.logs.clear()
        return {"success": True}

    async def traces_list(self, data: Any, ctx: InvocationContext) -> Any:
        out = list_traces(self._span_store(), data, now_ns=now_ns())
        out["storage"] = self._storage()
        return out

    async def traces_tree(self, data: Any, ctx: InvocationContext) -> Any:
        out = trace_tree(self._span_store(), data, collapse=self.collapse)
        out["storage"] = self._storage()
        return out

    async def traces_group_by(self, data: Any, ctx: InvocationContext) -> Any:
        out = group_by(self._span_store(), data, now_ns=now_ns())
        out["storage"] = self._storage()
        return out

    async def traces_clear(self, data: Any, ctx: InvocationContext) -> Any:
        self._span_store().clear()
        self._to_archive.clear()
        if self.archive is not None:
            await self.archive.clear()
        return {"success": True}

    async def metrics_list(self, data: Any, ctx: InvocationContext) -> Any:
        Payload("engine::metrics::list", data)
        stats: Any = {}
        try:
            stats = await self.client.invoke("engine::calls::stats", {}, timeout=STATS_TIMEOUT)
        except FunctionError as exc:
            log.debug("engine::calls::stats unavailable", code=exc.code)
        active = 0
        try:
            workers = await self.client.invoke("engine::workers::list", {}, timeout=STATS_TIMEOUT)
            active = len(workers.get("workers") or ()) if isinstance(workers, dict) else 0
        except FunctionError:
            pass
        engine = engine_metrics(stats, active_workers=active, counts=self.workers)
        return list_metrics(self.metrics, data, engine, now_ns=now_ns())

    async def rollups_list(self, data: Any, ctx: InvocationContext) -> Any:
        return self.watch.rollups_result(data)

    async def sampling_rules(self, data: Any, ctx: InvocationContext) -> Any:
        s = self.settings
        return {
            "traces": {
                "default_ratio": s.sampling_ratio,
                "rules": list(s.sampling_rules),
                "parent_based": s.parent_based,
                "rate_limit": None
                if s.rate_limit is None
                else {"max_traces_per_second": s.rate_limit},
            },
            "logs": {"sampling_ratio": s.logs_sampling_ratio},
            "timestamp": now_ns() // 1_000_000,
        }

    async def health_check(self, data: Any, ctx: InvocationContext) -> Any:
        s = self.settings
        disabled: dict[str, Any] = {"status": "disabled", "details": None}
        storage = self._storage()
        components = {
            "otel": {
                "status": "healthy",
                "details": {
                    "enabled": True,
                    "service_name": s.service_name,
                    "exporter": f"Some({s.exporter.capitalize()})",
                    **({"otlp": self.export.status()} if self.export is not None else {}),
                },
            }
            if s.enabled
            else disabled,
            "metrics": {"status": "healthy", "details": {"stored_metrics": len(self.metrics)}}
            if self.metrics is not None
            else disabled,
            "logs": {"status": "healthy", "details": {"stored_logs": len(self.logs)}}
            if self.logs is not None
            else disabled,
            "spans": {
                "status": "healthy",
                "details": {
                    "stored_spans": len(self.spans),
                    "hot_bytes": self.spans.bytes,
                    "archive": storage,
                },
            }
            if self.spans is not None and s.enabled
            else disabled,
        }
        degraded = storage.get("status") == "degraded"
        return {
            "status": "degraded" if degraded else "healthy",
            "components": components,
            "timestamp": now_ns() // 1_000_000,
            "version": engine_version(),
        }

    async def alerts_list(self, data: Any, ctx: InvocationContext) -> Any:
        return self.watch.list_result()

    async def alerts_evaluate(self, data: Any, ctx: InvocationContext) -> Any:
        return await self.watch.evaluate_result()

    # -- trigger types -------------------------------------------------------------------------

    async def _bind_log(self, binding: TriggerBinding) -> None:
        config = binding.config if isinstance(binding.config, dict) else {}
        level = str(config.get("level") or "all").lower()
        if level != "all" and level not in LEVELS:
            raise FunctionError(
                "invalid_trigger_config",
                f"log trigger level must be all, trace, debug, info, warn or error, not {level!r}",
            )
        self._log_bindings[binding.id] = binding

    async def _unbind_log(self, binding: TriggerBinding) -> None:
        self._log_bindings.pop(binding.id, None)

    async def _bind_trace(self, binding: TriggerBinding) -> None:
        if self.spans is None:
            raise FunctionError(*_NOT_ENABLED)
        self._trace_bindings[binding.id] = binding

    async def _unbind_trace(self, binding: TriggerBinding) -> None:
        self._trace_bindings.pop(binding.id, None)

    def deliver_trace_tick(self) -> int:
        """One coalesced tick: each matching ``trace`` trigger gets the changed trace ids."""
        changed, self._changed_traces = self._changed_traces, {}
        if not changed or not self._trace_bindings:
            return 0
        fired = 0
        for binding in list(self._trace_bindings.values()):
            config = binding.config if isinstance(binding.config, dict) else {}
            service = config.get("service_name")
            status = config.get("status")
            ids = [
                tid
                for tid, row in changed.items()
                if (not service or service_of(row).lower() == service.lower())
                and (not status or status_of(row).lower() == str(status).lower())
            ]
            if ids:
                self._deliver_in_own_trace(binding, {"trace_ids": ids})
                fired += 1
        return fired

    def _deliver_in_own_trace(self, binding: TriggerBinding, payload: Any) -> None:
        """Deliver in a trace of our own, remembered: its spans (the handler's and whatever it
        calls) must not count as trace activity, or the trigger would fire on its own output."""
        trace_id = new_trace_id()
        self._deliveries[trace_id] = None
        while len(self._deliveries) > DELIVERY_TRACES:
            del self._deliveries[next(iter(self._deliveries))]
        token = current.set((format_traceparent(trace_id, new_span_id()), None))
        try:
            self.client.invoke_void(binding.function_id, payload, metadata=binding.metadata)
        finally:
            current.reset(token)

    async def _workers_event(self, data: Any, ctx: InvocationContext) -> None:
        self.workers.event(data)
        return None

    # -- background ----------------------------------------------------------------------------

    async def _trace_loop(self) -> None:
        while True:
            await trio.sleep(TRACE_TICK)
            self.deliver_trace_tick()

    async def _flush_archive(self) -> None:
        if self.archive is not None and self._to_archive:
            batch, self._to_archive = self._to_archive, []
            await self.archive.write([span_of(r) for r in batch], now_ns())

    async def _archive_loop(self) -> None:
        while True:
            await trio.sleep(ARCHIVE_EVERY)
            await self._flush_archive()

    async def _sweep_loop(self) -> None:
        while True:
            await trio.sleep(SWEEP_EVERY)
            now = now_ns()
            if self.metrics is not None:
                self.metrics.expire(now)
            if self.logs is not None:
                self.logs.expire(now)
            if self.spans is not None and self.archive is not None:
                self.spans.expire(now, self.archive.retention_ns)
            self.prune_shapes()

    def prune_shapes(self) -> int:
        """Forget the span shapes no row still held uses (their workers have gone)."""
        if len(SHAPES) <= SHAPES_KEPT:
            return 0
        used = shape_numbers(self._to_archive) | shape_numbers(self._changed_traces.values())
        if self.spans is not None:
            used |= shape_numbers(self.spans.rows())
        return SHAPES.prune(used)
