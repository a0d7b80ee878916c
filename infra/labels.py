"""The labels that tell the rules what a resource is. Rules see inputs, not our Python objects, so each
component labels what it creates and each rule reads the label back; both take the key from here.
Literal values, known at `pulumi preview` as at `pulumi up`."""

from __future__ import annotations

STACK_PREFIX_LABEL = "stack-prefix"  # the topic prefix of the stack that made the resource
FUNCTION_LABEL = "batchline-function"  # on each function: worker | coordinator | reconcile
DATASET_LABEL = "batchline-dataset"  # on each dataset: main | staging (infra/access.py's dataset kinds)
TOPIC_LABEL = "batchline-topic"  # on each source topic: its topology key (infra/access.py's publishes_to)
DEAD_LETTER_LABEL = "batchline-dead-letters"  # on each dead-letter pull subscription: its topic key
# On each dead-lettering push subscription: the burst it must carry and the milliseconds one message
# holds its target's slot (label values take no dots), what `delivery-fits-caps` checks (infra/capacity.py).
BURST_LABEL = "batchline-burst"
ITEM_MS_LABEL = "batchline-item-ms"
# Alert policies carry user labels (underscores, not dashes): the F9 alert key and the stack prefix.
ALERT_LABEL = "batchline_alert"
ALERT_STACK_PREFIX_LABEL = "stack_prefix"


def stack_labels(prefix: str) -> dict[str, str]:
    """The labels every dataset, table, topic and subscription of the stack carries."""
    return {"app": "batchline", STACK_PREFIX_LABEL: prefix}
