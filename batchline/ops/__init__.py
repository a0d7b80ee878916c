"""`batchline` operator commands (start, status, audit, consolidate, reconcile, redispatch, dlq): the
same control path against the local stack or a deployment. Not part of the functions' archives."""
