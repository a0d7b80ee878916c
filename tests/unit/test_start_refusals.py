"""What a start that has nothing to run tells the operator: how to load the date (issue 14)."""

from __future__ import annotations

import datetime as dt

from batchline.flows.dispatch import no_context_message
from batchline.settings import Settings

DAY = dt.date(2030, 1, 2)


def test_on_the_local_stack_the_refusal_names_the_seeding_command():
    msg = no_context_message(Settings(bigquery_emulator_host="http://127.0.0.1:9050"), DAY, scheduled=False)
    assert msg.startswith("no valid context rows for 2030-01-02")
    assert "`batchline local seed 2030-01-02`" in msg


def test_on_a_deployment_it_names_the_loader_contract_instead():
    s = Settings(project="my-project")
    msg = no_context_message(s, DAY, scheduled=False)
    assert s.context_table_id in msg and "loaded_at" in msg and "upstream loader" in msg
    assert "batchline local seed" not in msg


def test_a_repair_of_items_no_longer_scheduled_says_so():
    msg = no_context_message(Settings(), DAY, scheduled=True)
    assert "none of the requested items" in msg and "seed" not in msg
