"""Rules on the functions: caps and runtime as the stack config says, internal ingress, no fault switch,
memory/CPU pairs Google accepts, the settings contract's environment, our own build account."""

from __future__ import annotations

from infra import limits
from infra.access import BUILD, BUILD_ROLES
from infra.function_spec import INGRESS, RUNTIME
from infra.resource_types import T_ACCOUNT, T_FUNCTION, T_PROJECT_IAM
from infra.rules.engine import Finding, Needs, rule
from infra.rules.reading import account_email, function_of, identity
from infra.shared import settings, topology
from infra.view import UNKNOWN, Stack, number


@rule("function-caps", mandatory=False, needs=Needs.CONFIG)
def function_caps(stack: Stack) -> list[Finding]:
    """Each function's caps equal the stack config (emergency profile applied when switched on)."""
    out: list[Finding] = []
    seen = set()
    for f in stack.of_type(T_FUNCTION):
        fn = function_of(f)
        seen.add(fn)
        caps = stack.config.functions.caps.get(fn)
        if caps is None:
            out.append(Finding("function-caps", f.name, f"unknown function label {fn!r}"))
            continue
        sc = f.props.get("serviceConfig") or {}
        want = {"maxInstanceCount": caps.max_instances, "maxInstanceRequestConcurrency": caps.concurrency,
                "minInstanceCount": caps.min_instances, "availableMemory": caps.memory,
                "availableCpu": caps.cpu, "timeoutSeconds": caps.timeout_s}
        for key, value in want.items():
            if sc.get(key) != value:
                out.append(Finding("function-caps", f.name, f"{key} is {sc.get(key)!r}, stack config says {value!r}"))
    for fn in sorted(set(topology.FUNCTIONS) - seen):
        out.append(Finding("function-caps", fn, "function not deployed"))
    return out


@rule("function-runtime", mandatory=False, needs=Needs.CONFIG)
def function_runtime(stack: Stack) -> list[Finding]:
    """Runtime, entry point, internal ingress, dedicated service account, and every settings variable
    (never BATCHLINE_ALLOW_FAULTS)."""
    out: list[Finding] = []
    required = set(settings.Settings().deployed_env())  # the contract, from its one source
    for f in stack.of_type(T_FUNCTION):
        fn = function_of(f)
        bc, sc = f.props.get("buildConfig") or {}, f.props.get("serviceConfig") or {}
        problems = []
        if bc.get("runtime") != RUNTIME:
            problems.append(f"runtime {bc.get('runtime')!r}, expected {RUNTIME}")
        if bc.get("entryPoint") != fn:
            problems.append(f"entry point {bc.get('entryPoint')!r}, expected {fn!r}")
        if sc.get("ingressSettings") != INGRESS:
            problems.append(f"ingress {sc.get('ingressSettings')!r}, expected {INGRESS}")
        if sc.get("serviceAccountEmail") != account_email(stack, fn):
            problems.append(f"runs as {sc.get('serviceAccountEmail')!r}, not its own service account")
        env = sc.get("environmentVariables") or {}
        missing = sorted(required - set(env))
        if missing:
            problems.append(f"missing settings variables {missing}")
        if settings.ENV_ALLOW_FAULTS in env:
            problems.append(f"{settings.ENV_ALLOW_FAULTS} must never be set by infra")
        out += [Finding("function-runtime", f.name, why) for why in problems]
    return out


@rule("function-ingress", mandatory=True)
def function_ingress(stack: Stack) -> list[Finding]:
    """Functions accept internal traffic only and never run with faults enabled."""
    out = []
    for f in stack.of_type(T_FUNCTION):
        if f.get("serviceConfig", "ingressSettings") != INGRESS:
            out.append(Finding("function-ingress", f.name, f"ingress is not {INGRESS}"))
        env = f.get("serviceConfig", "environmentVariables", default={})
        if env is not UNKNOWN and settings.ENV_ALLOW_FAULTS in env:
            out.append(Finding("function-ingress", f.name, f"{settings.ENV_ALLOW_FAULTS} is set"))
    return out


@rule("build-service-account", mandatory=True)
def build_service_account(stack: Stack) -> list[Finding]:
    """Every function builds as our build account, which holds exactly the roles Google's custom
    build service account page lists (never the project's default build account)."""
    out = []
    for f in stack.of_type(T_FUNCTION):
        accounts = [a.get("accountId") for a in stack.deps_of(f, "buildConfig", T_ACCOUNT)]
        if not f.get("buildConfig", "serviceAccount") or not any(
                isinstance(a, str) and a.endswith(f"-{BUILD}") for a in accounts):
            out.append(Finding("build-service-account", f.name, "does not build as the build service account"))
    held = {g.get("role") for g in stack.of_type(T_PROJECT_IAM) if identity(stack, g) == BUILD}
    if stack.of_type(T_FUNCTION) and held != set(BUILD_ROLES):
        out.append(Finding("build-service-account", BUILD, f"holds {sorted(map(str, held))}, Google lists "
                                                           f"{sorted(BUILD_ROLES)}"))
    return out


@rule("function-memory-cpu", mandatory=False)
def function_memory_cpu(stack: Stack) -> list[Finding]:
    """Memory/CPU pairs and concurrency Google accepts (infra/limits.py)."""
    out = []
    for f in stack.of_type(T_FUNCTION):
        memory, cpu = f.get("serviceConfig", "availableMemory"), f.get("serviceConfig", "availableCpu")
        if memory in limits.MEMORY_MIB and cpu in limits.CPU_CHOICES:
            problem = limits.memory_cpu_problem(memory, cpu)
            conc = number(f.get("serviceConfig", "maxInstanceRequestConcurrency"))
            if problem is None and conc is not None and conc > 1 and float(cpu) < 1:
                problem = f"concurrency {conc:g} needs at least 1 vCPU, got {cpu}"
        else:
            problem = f"memory {memory!r} / cpu {cpu!r} not among the accepted values"
        if problem:
            out.append(Finding("function-memory-cpu", f.name, problem))
    return out


@rule("function-env-contract", mandatory=False)
def function_env_contract(stack: Stack) -> list[Finding]:
    """Every function gets exactly the variables batchline.settings renders for a deployment."""
    want = set(settings.Settings().deployed_env())
    out = []
    for f in stack.of_type(T_FUNCTION):
        env = f.get("serviceConfig", "environmentVariables", default={})
        if env is UNKNOWN:
            continue
        if set(env) != want:
            out.append(Finding("function-env-contract", f.name, f"missing {sorted(want - set(env))}, "
                                                                f"unexpected {sorted(set(env) - want)}"))
    return out


RULES = (function_caps, function_runtime, function_ingress, build_service_account, function_memory_cpu,
         function_env_contract)
