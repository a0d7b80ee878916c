"""The Pub/Sub topology, declared once.

Both the local stack (`batchline local up`) and the Pulumi program (`infra/`) build topics and
subscriptions from `TOPOLOGY`, so what is tested locally is what is deployed. Every source
subscription gets a dead-letter topic, and every dead-letter topic gets a pull subscription that keeps
the messages for inspection and replay (a dead-letter topic without a subscription drops them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

WORKER = "worker"
COORDINATOR = "coordinator"
RECONCILE = "reconcile"
FUNCTIONS: tuple[str, ...] = (WORKER, COORDINATOR, RECONCILE)

# HTTP paths of the coordinator (one Cloud Function, one route per concern).
PATH_START = "/start"
PATH_COMPLETIONS = "/completions"
PATH_CONSOLIDATE = "/consolidate"
PATH_STALL_CHECK = "/stall-check"
PATH_DEAD_LETTERS = "/dead-letters"  # + "/<source topic key>"
PATH_CONTROL = "/control"  # operator requests (batchline.domain.control_requests), pushed from the control topic
PATH_WORK = "/"  # the worker's only route
PATH_RECONCILE = "/"  # the reconcile function's only route


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retry and dead-letter settings of one subscription; stack config may override them."""

    ack_deadline_s: int = 60
    max_delivery_attempts: int = 5
    min_backoff_s: int = 10
    max_backoff_s: int = 600
    retention_s: int = 7 * 24 * 3600


@dataclass(frozen=True)
class Push:
    """Where a push subscription delivers: a function and a path on it."""

    function: str
    path: str


@dataclass(frozen=True)
class SubscriptionSpec:
    name: str
    push: Push | None  # None: a pull subscription
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    dead_letter: bool = True  # source subscriptions dead-letter; dead-letter readers do not


@dataclass(frozen=True)
class TopicSpec:
    key: str  # short, stable name used in code ("work", "completions", ...)
    name: str
    subscriptions: tuple[SubscriptionSpec, ...]
    # Whether the coordinator turns this topic's dead letters into batch state (a push reader on
    # /dead-letters/<key>). Informational topics keep their dead letters in the pull reader only.
    dead_letter_handled: bool = True

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.name}-dlq"

    @property
    def dead_letter_pull_subscription(self) -> str:
        return f"{self.name}-dlq-pull"

    @property
    def dead_letter_push_subscription(self) -> str:
        return f"{self.name}-dlq-push"


@dataclass(frozen=True)
class Topology:
    prefix: str
    topics: tuple[TopicSpec, ...]

    def topic(self, key: str) -> TopicSpec:
        for t in self.topics:
            if t.key == key:
                return t
        raise KeyError(f"no topic with key {key!r}; known: {[t.key for t in self.topics]}")

    def dead_letter_subscriptions(self, spec: TopicSpec) -> tuple[SubscriptionSpec, ...]:
        """The readers of a topic's dead-letter topic: a pull one that keeps every message for
        inspection/replay, and (for handled topics) a push one that records the terminal state."""
        pull = SubscriptionSpec(spec.dead_letter_pull_subscription, None, dead_letter=False)
        if not spec.dead_letter_handled:
            return (pull,)
        return (
            pull,
            SubscriptionSpec(
                spec.dead_letter_push_subscription,
                Push(COORDINATOR, f"{PATH_DEAD_LETTERS}/{spec.key}"),
                dead_letter=False,
            ),
        )

    def dead_letter_sources(self) -> tuple[str, ...]:
        """Topic keys whose dead letters the coordinator's /dead-letters/<key> route handles."""
        return tuple(t.key for t in self.topics
                     if t.dead_letter_handled and any(s.dead_letter for s in t.subscriptions))

    def edges(self) -> set[tuple[str, str, str | None, str | None]]:
        """(topic, subscription, push function, push path) for every subscription, dead letters
        included: the shape both the local stack and infra must reproduce."""
        out: set[tuple[str, str, str | None, str | None]] = set()
        for t in self.topics:
            for s in t.subscriptions:
                out.add((t.name, s.name, s.push.function if s.push else None, s.push.path if s.push else None))
            if any(s.dead_letter for s in t.subscriptions):
                for s in self.dead_letter_subscriptions(t):
                    out.add((t.dead_letter_topic, s.name, s.push.function if s.push else None,
                             s.push.path if s.push else None))
        return out


def build_topology(prefix: str = "batchline") -> Topology:
    """The pipeline's topics. `prefix` namespaces them (e.g. per stack)."""

    def n(suffix: str) -> str:
        return f"{prefix}-{suffix}"

    return Topology(
        prefix=prefix,
        topics=(
            TopicSpec("work", n("work"), (
                SubscriptionSpec(n("work-push"), Push(WORKER, PATH_WORK),
                                 DeliveryPolicy(ack_deadline_s=120)),
            )),
            TopicSpec("completions", n("completions"), (
                SubscriptionSpec(n("completions-push"), Push(COORDINATOR, PATH_COMPLETIONS)),
            )),
            TopicSpec("consolidation", n("consolidation"), (
                SubscriptionSpec(n("consolidation-push"), Push(COORDINATOR, PATH_CONSOLIDATE),
                                 DeliveryPolicy(ack_deadline_s=600)),
            )),
            # Operator requests (`batchline start/consolidate/reconcile/dlq replay`): the only way an
            # operator reaches the internal-only coordinator, locally and deployed alike. Its dead
            # letters are recorded as failed control requests (/dead-letters/control).
            TopicSpec("control", n("control"), (
                SubscriptionSpec(n("control-push"), Push(COORDINATOR, PATH_CONTROL),
                                 DeliveryPolicy(ack_deadline_s=600)),
            )),
            # Batch summaries are a copy of batch state for downstream readers; their dead letters
            # stay in the pull reader (nothing to record: Firestore already has the batch).
            TopicSpec("summary", n("summary"), (
                SubscriptionSpec(n("summary-pull"), None),
            ), dead_letter_handled=False),
        ),
    )


TOPOLOGY = build_topology()
