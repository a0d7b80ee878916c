"""Loaded by Python at start-up in the local stack's function processes that bench/cost.py restarts with
this folder first on PYTHONPATH: installs bench/cost_counting.py's counters when
$BATCHLINE_COST_COUNT_DIR is set. Local benchmark only; nothing here is deployed."""

import os
import sys

if os.environ.get("BATCHLINE_COST_COUNT_DIR"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import cost_counting

    cost_counting.install()
