"""Cloud Function `reconcile`: the daily schedule-versus-predictions check (scheduler target).

The scheduler POSTs `{}`: no game_date means yesterday in the schedule's time zone (reconcile.py)."""

import functions_framework

from batchline.adapters.clients import default_clients
from batchline.domain.messages import ReconcileRequest
from batchline.flows.reconcile import reconcile as reconcile_core
from batchline.http import respond, run_json


@functions_framework.http
def reconcile(request):
    if request.method != "POST":
        return respond({"ok": False, "error": "POST only"}, 405)
    return run_json("reconcile", request, ReconcileRequest,
                    lambda req: reconcile_core(default_clients(), req).as_dict())
