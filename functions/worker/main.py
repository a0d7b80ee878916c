"""Cloud Function `worker`: Pub/Sub push of one work item -> one verified staging table."""

import dataclasses

import functions_framework

from batchline.clients import default_clients
from batchline.http import run_push
from batchline.worker import handle_work


@functions_framework.http
def worker(request):
    return run_push("worker", request, lambda env: dataclasses.asdict(handle_work(default_clients(), env)))
