"""The worker protocol's messages (PROTOCOL.md §6) as frozen attrs classes.

One class per wire tag; the codec (``transport.codec``) maps them to and from JSON. Fields a
message may omit default to ``None`` and are left out when encoding, as the SDKs do.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs


@attrs.frozen
class ErrorBody:
    code: str
    message: str
    stacktrace: str | None = None


@attrs.frozen
class TriggerAction:
    """``{"type":"void"}`` or ``{"type":"enqueue","queue":Q}``."""

    type: str
    queue: str | None = None


@attrs.frozen
class WorkerRegistered:
    TAG: ClassVar[str] = "workerregistered"
    worker_id: str
    reattach_token: str | None = None
    features: list[str] | None = None


@attrs.frozen
class Reattach:
    TAG: ClassVar[str] = "reattach"
    previous_worker_id: str
    reattach_token: str | None = None


@attrs.frozen
class RegisterFunction:
    TAG: ClassVar[str] = "registerfunction"
    id: str
    description: str | None = None
    request_format: Any = None
    response_format: Any = None
    metadata: Any = None
    invocation: Any = None
    observe: Any = None


@attrs.frozen
class UnregisterFunction:
    TAG: ClassVar[str] = "unregisterfunction"
    id: str


@attrs.frozen
class RegistrationRejected:
    TAG: ClassVar[str] = "registrationrejected"
    code: str
    namespace: str
    owner_worker_id: str
    worker_name: str | None = None
    function_id: str | None = None


@attrs.frozen
class RegisterTriggerType:
    TAG: ClassVar[str] = "registertriggertype"
    id: str
    description: str = ""
    trigger_request_format: Any = None
    call_request_format: Any = None
    namespace: str | None = None


@attrs.frozen
class UnregisterTriggerType:
    TAG: ClassVar[str] = "unregistertriggertype"
    id: str
    namespace: str | None = None


@attrs.frozen
class RegisterTrigger:
    TAG: ClassVar[str] = "registertrigger"
    id: str
    trigger_type: str
    function_id: str
    config: Any = None
    metadata: Any = None
    namespace: str | None = None
    trigger_namespace: str | None = None


@attrs.frozen
class UnregisterTrigger:
    TAG: ClassVar[str] = "unregistertrigger"
    id: str
    trigger_type: str | None = None


@attrs.frozen
class TriggerRegistrationResult:
    TAG: ClassVar[str] = "triggerregistrationresult"
    id: str
    trigger_type: str
    function_id: str
    error: ErrorBody | None = None


@attrs.frozen
class InvokeFunction:
    TAG: ClassVar[str] = "invokefunction"
    function_id: str
    data: Any = None
    invocation_id: str | None = None
    action: TriggerAction | None = None
    namespace: str | None = None
    metadata: Any = None
    traceparent: str | None = None
    baggage: str | None = None
    # SDK 0.25 (OBSERVE.md §3.10): kept raw, read leniently by supervisor/engine/observe.
    caller: Any = None
    observe_depth: Any = None
    activation: Any = None


@attrs.frozen
class InvocationResult:
    TAG: ClassVar[str] = "invocationresult"
    invocation_id: str
    function_id: str
    result: Any = None
    error: ErrorBody | None = None
    traceparent: str | None = None
    baggage: str | None = None


@attrs.frozen
class RegisterService:
    TAG: ClassVar[str] = "registerservice"
    id: str
    name: str | None = None
    description: str | None = None
    parent_service_id: str | None = None


@attrs.frozen
class Ping:
    TAG: ClassVar[str] = "ping"


@attrs.frozen
class Pong:
    TAG: ClassVar[str] = "pong"


@attrs.frozen
class ErrorFrame:
    """Connect-time refusal (§6.15); never decoded from a worker."""

    TAG: ClassVar[str] = "error"
    error: ErrorBody


@attrs.frozen
class SupPing:
    """Supervisor liveness probe on a local actor link (SUPERVISOR.md §3.4)."""

    TAG: ClassVar[str] = "sup_ping"
    seq: int


@attrs.frozen
class SupPong:
    TAG: ClassVar[str] = "sup_pong"
    seq: int


# -- the observe family (OBSERVE.md §3): nested parts stay raw JSON; the observe core
# validates them, so a malformed field gets a specific error instead of a dropped frame.


@attrs.frozen
class Observe:
    TAG: ClassVar[str] = "observe"
    id: str
    source: Any = None
    target: Any = None
    metadata: Any = None
    max_fires: Any = None
    expires_in_ms: Any = None
    max_in_flight: Any = None


@attrs.frozen
class Unobserve:
    TAG: ClassVar[str] = "unobserve"
    id: str


@attrs.frozen
class ObserveResult:
    TAG: ClassVar[str] = "observeresult"
    id: str
    state: str
    error: ErrorBody | None = None
    warnings: list[str] | None = None


@attrs.frozen
class ObserverStateChanged:
    TAG: ClassVar[str] = "observerstatechanged"
    id: str
    state: str
    fires: int
    reason: ErrorBody | None = None


@attrs.frozen
class FunctionRegistered:
    TAG: ClassVar[str] = "functionregistered"
    id: str
    namespace: str
    revision: int
    local_dispatch: bool
    observers: list[Any]


@attrs.frozen
class ObserverAdded:
    TAG: ClassVar[str] = "observeradded"
    function_id: str
    namespace: str
    revision: int
    observer: Any


@attrs.frozen
class ObserverRemoved:
    TAG: ClassVar[str] = "observerremoved"
    function_id: str
    namespace: str
    revision: int
    id: str


@attrs.frozen
class ObserverAck:
    TAG: ClassVar[str] = "observerack"
    function_id: str
    id: str
    revision: int
    namespace: str | None = None
    error: ErrorBody | None = None


@attrs.frozen
class InvocationsObserved:
    TAG: ClassVar[str] = "invocationsobserved"
    items: Any = None  # raw dicts: "output": null differs from an absent output


@attrs.frozen
class LocalInvocationStats:
    TAG: ClassVar[str] = "localinvocationstats"
    window_ms: Any = None
    functions: Any = None
    dropped_reports: Any = None


Message = (
    WorkerRegistered
    | Reattach
    | RegisterFunction
    | UnregisterFunction
    | RegistrationRejected
    | RegisterTriggerType
    | UnregisterTriggerType
    | RegisterTrigger
    | UnregisterTrigger
    | TriggerRegistrationResult
    | InvokeFunction
    | InvocationResult
    | RegisterService
    | Ping
    | Pong
    | ErrorFrame
    | SupPing
    | SupPong
    | Observe
    | Unobserve
    | ObserveResult
    | ObserverStateChanged
    | FunctionRegistered
    | ObserverAdded
    | ObserverRemoved
    | ObserverAck
    | InvocationsObserved
    | LocalInvocationStats
)

ALL_MESSAGES: tuple[type, ...] = (
    WorkerRegistered,
    Reattach,
    RegisterFunction,
    UnregisterFunction,
    RegistrationRejected,
    RegisterTriggerType,
    UnregisterTriggerType,
    RegisterTrigger,
    UnregisterTrigger,
    TriggerRegistrationResult,
    InvokeFunction,
    InvocationResult,
    RegisterService,
    Ping,
    Pong,
    ErrorFrame,
    SupPing,
    SupPong,
    Observe,
    Unobserve,
    ObserveResult,
    ObserverStateChanged,
    FunctionRegistered,
    ObserverAdded,
    ObserverRemoved,
    ObserverAck,
    InvocationsObserved,
    LocalInvocationStats,
)

BY_TAG: dict[str, type] = {cls.TAG: cls for cls in ALL_MESSAGES}  # type: ignore[attr-defined]
