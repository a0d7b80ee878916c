"""Cloud Function `worker`: Pub/Sub push of one work item -> one verified staging table."""

import dataclasses

import functions_framework

from batchline.clients import default_clients
from batchline.http import run
from batchline.messages import parse_envelope
from batchline.worker import handle_work


@functions_framework.http
def worker(request):
    body = request.get_data()
    return run("worker", lambda: dataclasses.asdict(handle_work(default_clients(), parse_envelope(body))), body)
