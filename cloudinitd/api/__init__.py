"""cloudinitd as a library: the calls the command line (and any program) makes.

    from cloudinitd import api

    outcome = api.boot("plans/hello", home="/tmp/cid", vars={"greeting": "hi"})
    for inst in outcome.instances:
        print(inst.label, inst.address)
    api.terminate(outcome.run, home="/tmp/cid")

Every call takes plain arguments (`home`: the state folder, default
$CLOUDINITD_HOME; run names; plan paths; options) and, where work happens,
a `progress(service, index, state, detail)` callback. Results are frozen
dataclasses (results.py) with one partial-failure shape, built by the engine
itself: a `RunOutcome` holds a `ServiceOutcome` per service and an
`InstanceOutcome` per instance, each with `ok` and, when not ok, the failed
`step` and its `log_tail` (boot, repair, scale, reload, check, terminate; for
`exec` the `exit`, `stdout` and `stderr`). Bad input raises cloudinitd.errors (UsageError, PlanError, ...);
Ctrl-C during a converge raises `Interrupted`.
"""

from cloudinitd.api.lifecycle import (
    Progress,
    boot,
    check,
    dry_run,
    load,
    plan_file,
    quiet,
    reload,
    repair,
    run_plan,
    scale,
    status,
    terminate,
)
from cloudinitd.api.records import (  # noqa: A004 (exec: the command's name)
    choose,
    clean,
    clouds,
    exec,
    history,
    instances,
    login_argv,
    logs,
    outputs,
    plan_outputs,
    runs,
)
from cloudinitd.api.results import (
    CleanResult,
    CloudInfo,
    History,
    InstanceOutcome,
    InstanceStatus,
    Interrupted,
    LogFile,
    RunOutcome,
    RunStatus,
    RunSummary,
    ServiceOutcome,
    ServiceStatus,
)

__all__ = [
    "CleanResult", "CloudInfo", "History", "InstanceOutcome", "InstanceStatus", "Interrupted",
    "LogFile", "Progress", "RunOutcome", "RunStatus", "RunSummary", "ServiceOutcome",
    "ServiceStatus", "boot", "check", "choose", "clean", "clouds", "dry_run", "exec", "history",
    "instances", "load", "login_argv", "logs", "outputs", "plan_file", "plan_outputs", "quiet", "reload",
    "repair", "run_plan", "runs", "scale", "status", "terminate",
]
