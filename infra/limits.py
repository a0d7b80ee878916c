"""Google's limits that stack config must respect, each with the page it comes from, and the
deadline arithmetic between callers and the functions they call. Declared once and pure (no Pulumi, no
pydantic): the stack config's fields (infra/config_types.py), the rules and the tests all read them.

Memory and CPU of a Cloud Functions gen2 function (a Cloud Run service):
  * https://cloud.google.com/functions/docs/configuring/memory - minimum vCPU for each memory size
    (128 MiB .083, 256 MiB .167, 512 MiB .333, 1 GiB .583, 2 GiB 1, > 4 GiB 2, > 8 GiB 4, > 16 GiB 6,
    > 24 GiB 8);
  * https://cloud.google.com/run/docs/configuring/services/cpu - memory allowed for each vCPU
    (< 0.5 vCPU up to 512 MiB, < 1 vCPU up to 1 GiB, 1 up to 4 GiB, 2 up to 8 GiB, 4: 2-16 GiB,
    8: 4-32 GiB) and concurrency 1 below 1 vCPU.

Deadlines:
  * Pub/Sub push: "For push delivery, this value [ackDeadlineSeconds] is used to set the request
    timeout for the call to the push endpoint" (Subscription reference,
    https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions). An ack deadline
    shorter than the function's timeout makes Pub/Sub give up on a request that is still working and
    redeliver it: duplicate work and, after max attempts, a dead letter for an item that succeeded.
  * Cloud Scheduler: an attempt deadline shorter than the target's timeout marks a still-running
    call failed and retries it (attemptDeadline, 15 s - 30 min for HTTP targets,
    https://cloud.google.com/scheduler/docs/reference/rest/v1/projects.locations.jobs).
"""

from __future__ import annotations

from typing import NamedTuple


class Range(NamedTuple):
    """Inclusive bounds of a number."""

    lo: float
    hi: float

    def holds(self, value: float) -> bool:
        return self.lo <= value <= self.hi


# Cloud Functions gen2 (a Cloud Run service per function)
MAX_INSTANCES = Range(1, 1000)
CONCURRENCY = Range(1, 1000)  # requests per instance
MIN_INSTANCES = Range(0, 100)
TIMEOUT_S = Range(1, 3600)  # HTTP functions
# Pub/Sub subscriptions (the Subscription reference below)
ACK_DEADLINE_S = Range(10, 600)
MAX_DELIVERY_ATTEMPTS = Range(5, 100)
BACKOFF_S = Range(0, 600)
RETENTION_S = Range(600, 7 * 24 * 3600)  # 10 min .. 7 days
# Cloud Scheduler jobs (the Job reference below)
SCHEDULER_RETRY_COUNT = Range(0, 5)
SCHEDULER_BACKOFF_S = Range(1, 3600)
SCHEDULER_MAX_DOUBLINGS = Range(0, 16)
SCHEDULER_ATTEMPT_DEADLINE_S = Range(15, 1800)  # HTTP targets
SCHEDULER_ATTEMPT_DEADLINE_DEFAULT_S = 600

MEMORY_MIB: dict[str, int] = {"256Mi": 256, "512Mi": 512, "1Gi": 1024, "2Gi": 2048, "4Gi": 4096,
                              "8Gi": 8192, "16Gi": 16384, "32Gi": 32768}
MEMORY_CHOICES: tuple[str, ...] = tuple(MEMORY_MIB)
CPU_CHOICES: tuple[str, ...] = ("0.083", "0.167", "0.333", "0.583", "1", "2", "4", "8")

# (memory up to and including MiB, minimum vCPU): the functions memory page
_MIN_CPU_FOR_MEMORY: tuple[tuple[int, float], ...] = (
    (128, 0.083), (256, 0.167), (512, 0.333), (1024, 0.583), (2048, 1.0), (4096, 1.0),
    (8192, 2.0), (16384, 4.0), (24576, 6.0), (32768, 8.0))


def min_cpu_for_memory(mib: int) -> float:
    for upto, cpu in _MIN_CPU_FOR_MEMORY:
        if mib <= upto:
            return cpu
    raise ValueError(f"{mib} MiB is above the 32 GiB maximum")


def memory_range_for_cpu(cpu: float) -> tuple[int, int]:
    """(min, max) MiB allowed with this many vCPU: the Cloud Run CPU page."""
    if cpu < 0.5:
        return 0, 512
    if cpu < 1:
        return 0, 1024
    for limit, lo, hi in ((1, 0, 4096), (2, 0, 8192), (4, 2048, 16384), (6, 4096, 24576), (8, 4096, 32768)):
        if cpu <= limit:
            return lo, hi
    raise ValueError(f"{cpu} vCPU is above the 8 vCPU maximum")


def memory_cpu_problem(memory: str, cpu: str) -> str | None:
    """Why Google rejects this memory/CPU pair, or None if it accepts it."""
    mib, vcpu = MEMORY_MIB[memory], float(cpu)
    need = min_cpu_for_memory(mib)
    if vcpu < need:
        return f"memory {memory} needs at least {need:g} vCPU, got {cpu}"
    lo, hi = memory_range_for_cpu(vcpu)
    if not lo <= mib <= hi:
        return f"{cpu} vCPU allows memory {lo} to {hi} MiB, got {memory}"
    return None


# Seconds a caller's deadline must exceed the callee's timeout by: the request must end (answer or
# the function's own timeout) before the caller gives up on it.
DEADLINE_MARGIN_S = 30


def needed_deadline(timeout_s: int) -> int:
    return timeout_s + DEADLINE_MARGIN_S


def default_push_ack(topology_default_s: int, target_timeout_s: int) -> int:
    """The ack deadline a push subscription gets when config sets none: the shared topology's value,
    raised to the target's timeout + margin (capped at Pub/Sub's maximum; a timeout that needs more is
    rejected by validation)."""
    return min(int(ACK_DEADLINE_S.hi), max(topology_default_s, needed_deadline(target_timeout_s)))


def default_attempt_deadline(target_timeouts_s: list[int]) -> int:
    """The attempt deadline a job gets when config sets none: the default, raised to outlast every
    scheduled target (capped at Cloud Scheduler's maximum)."""
    return min(int(SCHEDULER_ATTEMPT_DEADLINE_S.hi),
               max([SCHEDULER_ATTEMPT_DEADLINE_DEFAULT_S, *(needed_deadline(t) for t in target_timeouts_s)]))
