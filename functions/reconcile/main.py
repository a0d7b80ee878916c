"""Cloud Function `reconcile`: the daily schedule-versus-predictions check (scheduler target)."""

import functions_framework

from batchline.clients import default_clients
from batchline.http import respond, run
from batchline.messages import ReconcileRequest, parse_json_body, parse_model
from batchline.reconcile import reconcile as reconcile_core


@functions_framework.http
def reconcile(request):
    if request.method != "POST":
        return respond({"ok": False, "error": "POST only"}, 405)
    return run("reconcile", lambda: reconcile_core(
        default_clients(), parse_model(ReconcileRequest, parse_json_body(request.get_data()))).as_dict())
