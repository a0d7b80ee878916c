"""The five options that name a command's target are declared once (batchline/ops/options.py): every
operator command takes them after its own and hands them, as given, to the target resolution."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from batchline.ops import options
from batchline.ops.cli import app

BATCH = "20300101_aaaaaaaaaaaa"
OPERATOR_COMMANDS = [["start", "2030-01-01"], ["consolidate", BATCH], ["reconcile", "2030-01-01"],
                     ["redispatch", BATCH, "player_0001"], ["status", BATCH], ["audit", BATCH],
                     ["dlq", "list"], ["dlq", "replay"]]


@pytest.mark.parametrize("command", OPERATOR_COMMANDS, ids=" ".join)
def test_every_operator_command_hands_its_five_target_options_to_the_resolution(command, tmp_path, monkeypatch):
    asked = []

    def resolve(*target):
        asked.append(target)
        raise options.TargetError("no such deployment")

    monkeypatch.setattr(options, "resolve", resolve)
    result = CliRunner().invoke(app, [*command, "--state-dir", str(tmp_path), "--project", "p-1",
                                      "--stack-outputs", str(tmp_path / "out.json"), "--topic-prefix", "bl",
                                      "--setting", "main_dataset=a", "--setting", "staging_dataset=b"])
    assert result.exit_code == 2 and "no such deployment" in result.output
    assert asked == [(tmp_path, "p-1", tmp_path / "out.json", "bl", ["main_dataset=a", "staging_dataset=b"])]
