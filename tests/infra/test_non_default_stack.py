"""A stack outside the defaults (BigQuery in EU, a named Firestore database) works end to end: the
program creates the database and its index exemptions there, every function reads both from its
environment, the stack outputs export both, and the operator CLI resolves its target from those
outputs to clients that open that database in that location (issue 18 item 4)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest

from batchline import settings
from batchline.adapters.clients import bigquery_client, firestore_client
from batchline.layout import UNINDEXED, exemptions
from batchline.ops.target import resolve
from infra import harness
from infra.resource_types import T_DATABASE, T_FIELD, T_FUNCTION

DATABASE = "batchline-eu"


@pytest.fixture(scope="module")
def eu_run(dev_raw) -> harness.StackRun:
    raw = copy.deepcopy(dev_raw)
    raw["bigquery"].update(location="EU")
    raw["firestore"] = {"create": True, "location": "eur3", "database": DATABASE}
    return harness.run_program(raw, stack="dev")


def test_the_outputs_export_the_location_and_the_database(eu_run, dev_run):
    assert (eu_run.outputs["bq_location"], eu_run.outputs["firestore_database"]) == ("EU", DATABASE)
    assert (dev_run.outputs["bq_location"], dev_run.outputs["firestore_database"]) == ("US", "(default)")


def test_the_database_and_every_function_use_the_configured_names(eu_run):
    (db,) = eu_run.of_type(T_DATABASE)
    assert (db.inputs["name"], db.inputs["locationId"]) == (DATABASE, "eur3")
    for fn in eu_run.of_type(T_FUNCTION):
        env = fn.inputs["serviceConfig"]["environmentVariables"]
        assert env[settings.ENV_BQ_LOCATION] == "EU" and env[settings.ENV_FIRESTORE_DATABASE] == DATABASE
        assert settings.from_env(env).firestore_database == DATABASE


def test_every_growing_field_is_exempted_from_indexing_in_the_configured_database(eu_run, dev_run):
    for run, database in ((eu_run, DATABASE), (dev_run, "(default)")):
        fields = run.of_type(T_FIELD)
        assert sorted((f.inputs["collection"], f.inputs["field"]) for f in fields) == sorted(exemptions())
        for f in fields:
            assert f.inputs["indexConfig"] == {}, "an empty index config disables every index of the field"
            assert f.inputs["database"] == database
    assert "merge_result" in UNINDEXED["batches"] and "missing_writes" in UNINDEXED["manifests"]


def test_an_existing_database_still_gets_its_exemptions(dev_raw):
    raw = copy.deepcopy(dev_raw)
    raw["firestore"] = {"create": False, "database": DATABASE}
    run = harness.run_program(raw, stack="dev")
    assert run.of_type(T_DATABASE) == []
    assert {f.inputs["database"] for f in run.of_type(T_FIELD)} == {DATABASE}
    assert run.outputs["firestore_database"] == DATABASE


def test_the_cli_resolves_its_target_from_the_stack_outputs(eu_run, tmp_path, monkeypatch):
    out = tmp_path / "outputs.json"
    out.write_text(json.dumps(eu_run.outputs, default=str))  # what `pulumi stack output --json` prints
    s = resolve(tmp_path, None, out, None, None).settings
    assert (s.project, s.bq_location, s.firestore_database) == ("batchline-dev", "EU", DATABASE)
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")  # builds a client without credentials
    assert firestore_client(s)._database == DATABASE
    assert bigquery_client(replace(s, bigquery_emulator_host="127.0.0.1:1")).location == "EU"


@pytest.mark.parametrize("bad", ["Default", "ab", "-db1", "db-", "a" * 64, "ae8a1f2c-1111-2222-3333-444455556666"])
def test_a_database_id_firestore_would_refuse_fails_the_config(dev_raw, bad):
    from infra import config

    raw = copy.deepcopy(dev_raw)
    raw["firestore"] = {"database": bad}
    with pytest.raises(config.ConfigError, match="firestore.database"):
        config.load(raw)
