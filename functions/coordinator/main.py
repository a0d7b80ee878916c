"""Cloud Function `coordinator`: one HTTP function, one route per concern.

POST /start              scheduler or operator: start a batch run for a date
POST /completions        Pub/Sub push: a worker's completion event
POST /consolidate        Pub/Sub push: consolidate a batch (one MERGE)
POST /dead-letters/<src> Pub/Sub push from a dead-letter topic: record the terminal state
POST /stall-check        scheduler: find stalled batches, re-dispatch or consolidate partially
POST /control            Pub/Sub push from the control topic: an operator request (batchline.domain.control_requests)

Every body is read with a size limit and validated before the clients are touched (batchline.http).
"""

import dataclasses

import functions_framework

from batchline import topology
from batchline.adapters.clients import default_clients
from batchline.domain.messages import StallCheckRequest, StartRequest
from batchline.flows import control as control_actions
from batchline.flows.completion import handle_completion
from batchline.flows.consolidation import handle_consolidation
from batchline.flows.dead_letters import DEAD_LETTER_SOURCES, handle_dead_letter
from batchline.flows.dispatch import start_batch
from batchline.flows.stall import stall_check
from batchline.http import respond, run_dead_letter, run_json, run_push


@functions_framework.http
def coordinator(request):
    path = request.path.rstrip("/") or "/"
    if request.method != "POST":
        return respond({"ok": False, "error": "POST only"}, 405)
    if path == topology.PATH_START:
        return run_json("start", request, StartRequest,
                        lambda req: dataclasses.asdict(start_batch(default_clients(), req)))
    if path == topology.PATH_COMPLETIONS:
        return run_push("completions", request,
                        lambda env: {"result": handle_completion(default_clients(), env)})
    if path == topology.PATH_CONSOLIDATE:
        return run_push("consolidate", request,
                        lambda env: {"result": handle_consolidation(default_clients(), env)})
    if path == topology.PATH_CONTROL:
        return run_push("control", request, lambda env: control_actions.handle_control(default_clients(), env))
    if path == topology.PATH_STALL_CHECK:
        return run_json("stall_check", request, StallCheckRequest,
                        lambda req: {"stalled": stall_check(default_clients(), req)})
    if path == topology.PATH_DEAD_LETTERS or path.startswith(topology.PATH_DEAD_LETTERS + "/"):
        source = path[len(topology.PATH_DEAD_LETTERS) + 1:]  # "" or unknown: recorded, never a looping 404
        return run_dead_letter(
            source, request, DEAD_LETTER_SOURCES,
            record=lambda **kw: default_clients().batches.record_rejected(**kw),
            fn=lambda env: {"result": handle_dead_letter(default_clients(), source, env)})
    return respond({"ok": False, "error": f"no route {path[:200]}"}, 404)
