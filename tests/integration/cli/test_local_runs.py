"""`imgclf` against a running local stack executes the template's state machines there, through the one runner."""

from __future__ import annotations

import json

from imgclf_cli.main import main
from imgclf_local.stack import LocalStack


def test_reclassify_runs_the_state_machine_on_the_stack_the_environment_points_at(capsys):
    # GIVEN a local stack running in this process, with the environment `imgclf local` prints
    with LocalStack(api=False, pumps=False):
        # WHEN `imgclf --json reclassify` runs against it
        code = main(["--json", "reclassify"])

    # THEN the template's machine ran (its states are reported) and the progress is one JSON line
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert [e.get("state") for e in entries if "state" in e] == ["ReclassifyUploads"]
    assert entries[-1] == {"active_model": None, "records": 0, "classified_by_active_model": 0, "rejected": 0}
