"""Target selection of the operator commands: a deployment's names from flags and stack outputs,
validated like the functions' environment; the local stack only when one is running."""

from __future__ import annotations

import json

import pytest

from batchline.ops.target import TargetError, new_request_id, resolve


def test_project_flags_and_settings(tmp_path):
    c = resolve(tmp_path, "my-proj-123", None, "bl-prod", ["main_dataset=preds", "stall_minutes=45"])
    s = c.settings
    assert (s.project, s.topic_prefix, s.main_dataset, s.stall_minutes) == ("my-proj-123", "bl-prod", "preds", 45)
    assert s.bigquery_emulator_host is None and s.allow_faults is False
    assert c.topology.topic("control").name == "bl-prod-control"


def test_stack_outputs_name_the_resources_and_flags_override_them(tmp_path):
    outputs = tmp_path / "out.json"
    outputs.write_text(json.dumps({"project": "out-proj-1", "topics": {"work": "bl-dev-work"},
                                   "main_dataset": "m", "staging_dataset": "st", "main_table": "t",
                                   "context_table": "ctx"}))
    s = resolve(tmp_path, None, outputs, None, None).settings
    assert (s.project, s.topic_prefix, s.main_dataset, s.staging_dataset, s.main_table, s.context_table) == (
        "out-proj-1", "bl-dev", "m", "st", "t", "ctx")
    assert resolve(tmp_path, "other-proj", outputs, None, None).settings.project == "other-proj"


@pytest.mark.parametrize(("project", "settings", "match"), [
    ("Bad_Project", None, "BATCHLINE_PROJECT"),
    ("my-proj-123", ["main_dataset=no-dashes"], "BATCHLINE_MAIN_DATASET"),
    ("my-proj-123", ["nope=1"], "KEY=VALUE"),
    ("my-proj-123", ["main_dataset"], "KEY=VALUE"),
    ("my-proj-123", ["allow_faults=1"], "KEY=VALUE"),
    ("my-proj-123", ["stall_minutes=0"], "BATCHLINE_STALL_MINUTES"),
])
def test_bad_targets_are_refused_with_the_setting_named(tmp_path, project, settings, match):
    with pytest.raises(TargetError, match=match):
        resolve(tmp_path, project, None, None, settings)


def test_local_target_needs_a_running_stack_and_takes_no_deployment_flags(tmp_path):
    with pytest.raises(TargetError, match="no running local stack"):
        resolve(tmp_path, None, None, None, None)
    with pytest.raises(TargetError, match="deployment"):
        resolve(tmp_path, None, None, "bl", None)
    with pytest.raises(TargetError, match="stack-outputs"):
        resolve(tmp_path, None, tmp_path / "missing.json", None, None)


def test_generated_request_ids_are_valid_and_unique():
    a, b = new_request_id("start", "2030-01-01"), new_request_id("start", "2030-01-01")
    assert a != b and a.startswith("start-2030-01-01-")
    assert len(new_request_id("replay", "x" * 500)) <= 128


def test_the_ledger_targets_a_deployment_through_the_same_resolution(tmp_path):
    """`batchline ledger --project/--stack-outputs` resolves a deployment like the operator commands
    (issue 18 item 6): a bad target is refused naming the setting, before any client is built."""
    from typer.testing import CliRunner

    from batchline.ops.cli import app

    result = CliRunner().invoke(app, ["ledger", "20300101_aaaaaaaaaaaa", "--project", "Bad_Project",
                                      "--state-dir", str(tmp_path)])
    assert result.exit_code == 2 and "BATCHLINE_PROJECT" in result.output and "{4,28}" in result.output
    result = CliRunner().invoke(app, ["ledger", "20300101_aaaaaaaaaaaa", "--stack-outputs",
                                      str(tmp_path / "missing.json"), "--state-dir", str(tmp_path)])
    assert result.exit_code == 2 and "stack-outputs" in result.output


def test_a_hostile_batch_id_is_a_clear_refusal_not_a_traceback(tmp_path):
    """`batchline consolidate 'BAD ID'` once crashed building its request id before the request was
    validated; now the request's own validation names what is wrong, with exit code 2."""
    from typer.testing import CliRunner

    from batchline.ops.cli import app

    for command in (["consolidate", "BAD ID/../x"], ["redispatch", "BAD ID", "p1"]):
        result = CliRunner().invoke(app, [*command, "--state-dir", str(tmp_path)])
        assert result.exit_code == 2, (command, result.output, result.exception)
        assert "batch id" in result.output and "Traceback" not in result.output
        assert new_request_id("consolidate", "BAD ID/../x").startswith("consolidate-BAD_ID_.._x-")
