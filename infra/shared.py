"""What infra takes from the batchline package: the contracts the deployment and the local stack share
(the Pub/Sub topology, the table schemas, the functions' settings, identifier checks). Every infra
module imports them from here, so where they live in batchline is written once; all four need only the
standard library, as the policy pack does. (Two contracts need more and are imported where they are
used: the schedule contract, pydantic, by infra/config_types.py and infra/components/scheduler.py; the
unindexed fields, which name the store's collections, by infra/components/firestore.py.)"""

from __future__ import annotations

from batchline import settings, topology
from batchline.domain import ids, schema

__all__ = ["ids", "schema", "settings", "topology"]
