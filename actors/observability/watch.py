"""The trio side of alerts and rollups: feed the pure cores, evaluate on a timer and on demand,
run the rules' actions (``engine::alerts::*``, ``engine::rollups::list``; WORKERS.md §10.1–10.2).

Every ``EVALUATE_EVERY`` seconds (10 s, the sample config's period) the watch reads the bus's RED
figures (``engine::calls::stats``) into samples and rollups, then judges the rules;
``engine::alerts::evaluate`` does the same at once. SDK metrics arrive with each ``MTRC``
ingest. A rule's action runs on each trigger and on its resolution, never in the way of the
evaluation: ``log`` writes a WARN record (stored like any log, ``service_name``
``iii-observability``) and a console line; ``function`` calls the function fire-and-forget;
``webhook`` POSTs the event with a ``WEBHOOK_TIMEOUT`` bound, in the background.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import httpx
import structlog
import trio

from actors.observability.alerts import (
    CALLS,
    ERROR_RATE,
    ERRORS,
    AlertEngine,
    AlertEvent,
    RecentSamples,
    rule_json,
)
from actors.observability.rollups import (
    CumulativeDeltas,
    RollupStore,
    list_rollups,
    red_samples,
    sdk_samples,
)
from manifests.blocks.observability import AlertRule
from transport.client import BusClient, FunctionError

__all__ = ["EVALUATE_EVERY", "MetricWatch"]

log = structlog.get_logger("iii-observability.alerts")

EVALUATE_EVERY: Final = 10.0
STATS_TIMEOUT: Final = 5.0
WEBHOOK_TIMEOUT: Final = 5.0
MAX_WEBHOOKS: Final = 16  # in flight at once; past it a webhook event is dropped and logged
SERVICE: Final = "iii-observability"

AddLog = Callable[[dict[str, Any], int], None]


def _now_ns() -> int:
    return time.time_ns()


class MetricWatch:
    def __init__(
        self,
        client: BusClient,
        rules: Sequence[AlertRule],
        *,
        rollups: bool,
        add_log: AddLog,
        clock: Callable[[], int] = _now_ns,
    ) -> None:
        self.client = client
        self.alerts = AlertEngine(rules)
        self.samples = RecentSamples(horizon_s=self.alerts.horizon_s)
        self._wanted: frozenset[str] = frozenset()
        self.rollups = RollupStore() if rollups else None
        self.add_log = add_log
        self.clock = clock
        self._red = CumulativeDeltas(primed=False)
        self._sdk = CumulativeDeltas(primed=True)
        self._nursery: trio.Nursery | None = None
        self._webhooks = 0
        self._lock = trio.Lock()
        self.set_rules(rules)

    def set_rules(self, rules: Sequence[AlertRule]) -> None:
        """Replace the rules; only the metrics they read are kept as samples (rollups keep
        every metric)."""
        self.alerts.set_rules(rules)
        self.samples.horizon_ns = self.alerts.horizon_s * 1_000_000_000
        wanted = {r.metric for r in rules}
        if ERROR_RATE in wanted:
            wanted |= {CALLS, ERRORS}
        self._wanted = frozenset(wanted)

    # -- feeding -------------------------------------------------------------------------------

    def ingest_metrics(self, records: list[dict[str, Any]], now_ns: int) -> None:
        samples, histograms = sdk_samples(records, self._sdk, now_ns)
        self._feed(samples, now_ns)
        if self.rollups is not None:
            for name, h in histograms:
                self.rollups.add_histogram(name, h, now_ns)

    def _feed(self, samples: list[Any], now_ns: int) -> None:
        wanted = self._wanted
        self.samples.add([s for s in samples if s.name in wanted], now_ns)
        if self.rollups is not None:
            for s in samples:
                self.rollups.add(s.name, s.value, now_ns)

    async def _read_red(self) -> None:
        try:
            stats = await self.client.invoke("engine::calls::stats", {}, timeout=STATS_TIMEOUT)
        except FunctionError as exc:
            log.debug("engine::calls::stats unavailable", code=exc.code)
            return
        now = self.clock()
        self._feed(red_samples(stats, self._red, now), now)

    # -- evaluation ----------------------------------------------------------------------------

    async def run(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        while True:
            await self.evaluate()
            await trio.sleep(EVALUATE_EVERY)

    async def evaluate(self) -> list[AlertEvent]:
        """Read the RED figures, judge the rules, run the actions; the events it caused."""
        async with self._lock:  # the timer and an evaluate call must not interleave readings
            await self._read_red()
            now = self.clock()
            events = self.alerts.evaluate(self.samples, now)
        for event in events:
            self._act(event, now)
        return events

    def _act(self, event: AlertEvent, now_ns: int) -> None:
        body = event.to_json()
        action = event.rule.action
        kind = "log" if action is None else action.type
        if kind == "function" and action is not None and action.path:
            self.client.invoke_void(action.path, body)
        elif kind == "webhook" and action is not None and action.url:
            self._webhook(action.url, body)
        else:
            text = f"alert {event.rule.name} {event.status}: {body['message']}"
            log.warning(text, alert=event.rule.name, status=event.status, value=event.value)
            self.add_log(
                {
                    "timestamp_unix_nano": now_ns,
                    "observed_timestamp_unix_nano": now_ns,
                    "severity_number": 13,
                    "severity_text": "WARN",
                    "body": text,
                    "attributes": {f"alert.{k}": v for k, v in body.items() if k != "action"},
                    "trace_id": "",
                    "span_id": "",
                    "resource": {"service.name": SERVICE},
                    "service_name": SERVICE,
                },
                now_ns,
            )

    def _webhook(self, url: str, body: dict[str, Any]) -> None:
        if self._nursery is None or self._webhooks >= MAX_WEBHOOKS:
            log.warning("alert webhook dropped", url=url, alert=body["name"])
            return
        self._webhooks += 1
        self._nursery.start_soon(self._post, url, body)

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        try:
            with trio.move_on_after(WEBHOOK_TIMEOUT):
                async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT) as http:
                    response = await http.post(url, json=body)
                if response.status_code >= 400:
                    log.warning("alert webhook refused", url=url, status=response.status_code)
        except httpx.HTTPError as exc:
            log.warning("alert webhook failed", url=url, error=str(exc))
        finally:
            self._webhooks -= 1

    # -- results -------------------------------------------------------------------------------

    def list_result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alerts": self.alerts.states(),
            "rules": [rule_json(r) for r in self.alerts.rules],
            "firing_count": self.alerts.firing_count,
            "timestamp": self.clock() // 1_000_000,
        }
        if not self.alerts.rules:
            out["message"] = "No alert rules configured"
        return out

    async def evaluate_result(self) -> dict[str, Any]:
        if not self.alerts.rules:
            return {
                "evaluated": False,
                "message": "No alert rules configured",
                "timestamp": self.clock() // 1_000_000,
            }
        events = await self.evaluate()
        return {
            "evaluated": True,
            "triggered_alerts": [e.to_json() for e in events if e.status == "firing"],
            "timestamp": self.clock() // 1_000_000,
        }

    def rollups_result(self, data: Any) -> dict[str, Any]:
        return list_rollups(self.rollups, data, now_ns=self.clock())
