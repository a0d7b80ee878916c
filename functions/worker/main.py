"""Cloud Function `worker`: Pub/Sub push of one work item -> one verified staging table."""

import dataclasses

import functions_framework

from batchline.adapters.clients import default_clients
from batchline.flows.work import handle_work
from batchline.http import respond, run_push


@functions_framework.http
def worker(request):
    if request.method != "POST":  # a health check or a stray GET is not a delivery: no line, no parse
        return respond({"ok": False, "error": "POST only"}, 405)
    return run_push("worker", request, lambda env: dataclasses.asdict(handle_work(default_clients(), env)))
