"""The engine's own ``engine::*`` functions and event trigger types, one module per family.

Each built-in is a plain function ``(ctx, data) -> result`` (or an awaitable result) installed
in ``default`` with no owner; raising ``InvocationFailed`` gives the caller that error code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervisor.engine.builtins.calls import calls_stats
from supervisor.engine.builtins.channels import channels_create, channels_delete
from supervisor.engine.builtins.functions import functions_info, functions_list
from supervisor.engine.builtins.logging import (
    LOG_LEVELS,
    baggage_get,
    baggage_get_all,
    baggage_set,
    make_log,
)
from supervisor.engine.builtins.sampling import sampling_apply
from supervisor.engine.builtins.triggers import (
    register_trigger,
    registered_triggers_info,
    registered_triggers_list,
    triggers_info,
    triggers_list,
    unregister_trigger,
)
from supervisor.engine.builtins.workers import workers_info, workers_list, workers_register

if TYPE_CHECKING:
    from supervisor.engine.bus import Bus


def install(bus: Bus) -> None:
    table = {
        "engine::functions::list": functions_list,
        "engine::functions::info": functions_info,
        "engine::workers::list": workers_list,
        "engine::workers::info": workers_info,
        "engine::workers::register": workers_register,
        "engine::triggers::list": triggers_list,
        "engine::triggers::info": triggers_info,
        "engine::registered-triggers::list": registered_triggers_list,
        "engine::registered-triggers::info": registered_triggers_info,
        "engine::register_trigger": register_trigger,
        "engine::unregister_trigger": unregister_trigger,
        "engine::channels::create": channels_create,
        "engine::channels::delete": channels_delete,
        "engine::calls::stats": calls_stats,
    }
    for fid, fn in table.items():
        bus.add_builtin(fid, fn)
    for level in LOG_LEVELS:
        bus.add_builtin(f"engine::log::{level}", make_log(level), component="iii-observability")
    bus.add_builtin("engine::sampling::apply", sampling_apply, component="iii-observability")
    bus.add_builtin("engine::baggage::get", baggage_get, component="iii-observability")
    bus.add_builtin("engine::baggage::set", baggage_set, component="iii-observability")
    bus.add_builtin("engine::baggage::get_all", baggage_get_all, component="iii-observability")
    bus.add_builtin_trigger_type(
        "engine::workers-available",
        "Fires when a worker connects, announces itself or disconnects",
        component="iii-engine-functions",
    )
    bus.add_builtin_trigger_type(
        "engine::functions-available",
        "Fires when the set of registered functions changes",
        component="iii-engine-functions",
    )
