"""Which of the engine's spans are kept: ``sampling_ratio`` and the ``sampling`` block of
``iii-observability`` (WORKERS.md §10.1), decided once per call at dispatch (pure; time is an
input).

Order: with ``parent_based``, a call that continues a trace follows its parent's sampled flag.
Otherwise the rate is the first rule whose ``operation`` (a glob on the function id) and
``service`` (a glob on the callee worker's name) both match, else ``sampling.default``, else
``sampling_ratio``. The ratio test is on the trace id (its low 64 bits against ``rate × 2⁶⁴``,
as OpenTelemetry's TraceIdRatioBased sampler does), so every hop of one trace decides alike.
``rate_limit.max_traces_per_second`` is a token bucket (one second's worth of burst) spent by
the traces that start here; a continued trace is not counted again.

The decision travels as the sampled bit of the callee's ``traceparent`` flags, so the SDKs'
parent-based samplers follow it, and a sampled-out call costs the engine nothing but the test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from fnmatch import translate
from typing import Any

from manifests.blocks.observability import ObservabilityBlock, SamplingRule
from manifests.blocks.strict import parse

__all__ = ["SAMPLED_FLAGS", "Sampler", "sampler_for"]

# The last hex digit of a traceparent whose sampled bit (bit 0 of the flags) is set.
SAMPLED_FLAGS = frozenset("13579bdf")
_SPACE = 1 << 64
_MEMO_MAX = 4096


def _glob(pattern: str | None) -> re.Pattern[str] | None:
    return None if pattern is None else re.compile(translate(pattern))


class Sampler:
    def __init__(
        self,
        default: float,
        rules: Sequence[SamplingRule] = (),
        *,
        parent_based: bool = False,
        max_traces_per_second: int | None = None,
    ) -> None:
        self.default = default
        self.rules = [(_glob(r.operation), _glob(r.service), r.rate) for r in rules]
        self.parent_based = parent_based
        self.limit = max_traces_per_second
        self._tokens = float(max_traces_per_second or 0)
        self._refilled: float | None = None
        self._memo: dict[tuple[str, str | None], float] = {}
        self.kept = 0
        self.dropped = 0

    def rate(self, function_id: str, service: str | None) -> float:
        key = (function_id, service)
        found = self._memo.get(key)
        if found is None:
            found = self.default
            for operation, svc, rate in self.rules:
                if (operation is None or operation.match(function_id)) and (
                    svc is None or (service is not None and svc.match(service))
                ):
                    found = rate
                    break
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            self._memo[key] = found
        return found

    def sampled(
        self,
        trace_id: str,
        function_id: str,
        service: str | None,
        parent_sampled: bool | None,
        now: float,
    ) -> bool:
        """Whether the span of this call is kept. ``parent_sampled`` is None for a call that
        starts a trace here, else the incoming traceparent's sampled bit."""
        if parent_sampled is not None and self.parent_based:
            keep = parent_sampled
        else:
            rate = self.rate(function_id, service) if self.rules else self.default
            keep = rate >= 1.0 or (rate > 0.0 and int(trace_id[16:], 16) < rate * _SPACE)
            if keep and parent_sampled is None and self.limit is not None:
                keep = self._take(now)
        if keep:
            self.kept += 1
        else:
            self.dropped += 1
        return keep

    def _take(self, now: float) -> bool:
        assert self.limit is not None
        if self._refilled is not None:
            self._tokens = min(
                float(self.limit), self._tokens + (now - self._refilled) * self.limit
            )
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def _ratio(env: Mapping[str, str]) -> float:
    try:
        return min(1.0, max(0.0, float(env.get("OTEL_TRACES_SAMPLER_ARG", ""))))
    except ValueError:
        return 1.0


def sampler_for(raw: Any, env: Mapping[str, str] | None = None) -> Sampler | None:
    """The sampler an ``iii-observability`` block asks for, or None when every span is kept
    (ratio 1, no rules, no rate limit, not parent-based: the hot path then tests nothing). The
    ratio resolves as the actor resolves it for ``engine::sampling::rules``."""
    block = parse(ObservabilityBlock, raw)
    sampling = block.sampling
    env = os.environ if env is None else env
    default = block.sampling_ratio if block.sampling_ratio is not None else _ratio(env)
    if sampling is not None and sampling.default is not None:
        default = sampling.default
    rules = sampling.rules if sampling is not None else ()
    parent_based = bool(sampling is not None and sampling.parent_based)
    limit = sampling.rate_limit if sampling is not None else None
    if default >= 1.0 and not rules and not parent_based and limit is None:
        return None
    return Sampler(
        default,
        rules,
        parent_based=parent_based,
        max_traces_per_second=None if limit is None else limit.max_traces_per_second,
    )
