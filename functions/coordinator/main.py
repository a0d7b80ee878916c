"""Cloud Function `coordinator`: one HTTP function, one route per concern.

POST /start              scheduler or operator: start a batch run for a date
POST /completions        Pub/Sub push: a worker's completion event
POST /consolidate        Pub/Sub push: consolidate a batch (one MERGE)
POST /dead-letters/<src> Pub/Sub push from a dead-letter topic: record the terminal state
POST /stall-check        scheduler: find stalled batches, re-dispatch or consolidate partially
POST /control            Pub/Sub push from the control topic: an operator request (batchline.control)
"""

import dataclasses

import functions_framework

from batchline import control_actions, topology
from batchline import coordinator as core
from batchline.clients import default_clients
from batchline.http import respond, run
from batchline.messages import StallCheckRequest, StartRequest, parse_envelope, parse_json_body, parse_model


@functions_framework.http
def coordinator(request):
    path = request.path.rstrip("/") or "/"
    if request.method != "POST":
        return respond({"ok": False, "error": "POST only"}, 405)
    body = request.get_data()
    if path == topology.PATH_START:
        return run("start", lambda: dataclasses.asdict(
            core.start_batch(default_clients(), parse_model(StartRequest, parse_json_body(body)))))
    if path == topology.PATH_COMPLETIONS:
        return run("completions", lambda: {
            "result": core.handle_completion(default_clients(), parse_envelope(body))}, body)
    if path == topology.PATH_CONSOLIDATE:
        return run("consolidate", lambda: {
            "result": core.handle_consolidation(default_clients(), parse_envelope(body))}, body)
    if path == topology.PATH_CONTROL:
        return run("control", lambda: control_actions.handle_control(default_clients(), parse_envelope(body)), body)
    if path == topology.PATH_STALL_CHECK:
        return run("stall_check", lambda: {"stalled": core.stall_check(
            default_clients(), parse_model(StallCheckRequest, parse_json_body(body)))})
    prefix = topology.PATH_DEAD_LETTERS + "/"
    if path.startswith(prefix):
        source = path[len(prefix):]
        return run("dead_letters", lambda: {"result": core.handle_dead_letter(
            default_clients(), source, parse_envelope(body))}, body)
    return respond({"ok": False, "error": f"no route {path}"}, 404)
