"""`imgclf audit`: a run's whole-dataset audit from a terminal, one line a finding, filters, --json."""

from __future__ import annotations

import json

import pytest

from imgclf import aws
from imgclf.runs import Runs
from imgclf.settings import get_settings
from imgclf_cli.main import main

RUN_ID = "20261129-120000-abcd"


@pytest.fixture
def audited(template_tables):
    """A completed run of dataset faces with an audit.json of three findings."""
    settings = get_settings()
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=settings.data_bucket)
    findings = [
        {"path": "happy/happy-0123456789ab.jpg", "kind": "label_error", "label": "happy", "score": 0.97,
         "probabilities": {"happy": 0.03, "sad": 0.97}, "suggested_label": "sad"},
        {"path": "sad/sad-0123456789ab.jpg", "kind": "outlier", "label": "sad", "score": 1.3,
         "probabilities": {"happy": 0.4, "sad": 0.6}, "ood_distance": 1.3},
        {"path": "sad/sad-ba9876543210.jpg", "kind": "near_duplicate", "label": "sad", "score": 2,
         "probabilities": {}, "group": 0, "group_size": 2, "cross_label": True, "group_labels": ["happy", "sad"]},
    ]
    audit = {"format_version": 1, "classes": ["happy", "sad"],
             "summary": {"n_images": 3, "counts": {"label_error": 1, "outlier": 1, "near_duplicate": 1}},
             "findings": findings}
    s3.put_object(Bucket=settings.data_bucket, Key=f"models/{RUN_ID}/output/audit.json", Body=json.dumps(audit))
    Runs(settings.runs_table).create(RUN_ID, status="Completed", dataset="faces")
    return findings


def test_every_finding_is_one_line_with_kind_label_suggestion_score_and_path(audited, capsys):
    # WHEN the audit is listed
    code = main(["audit", RUN_ID])

    # THEN one line per finding, in the audit's order, then a count
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].split() == ["label_error", "happy", "->", "sad", "0.970",
                                "datasets/faces/happy/happy-0123456789ab.jpg"]
    assert lines[1].split()[:5] == ["outlier", "sad", "->", "-", "1.300"]
    assert lines[2].split()[:5] == ["near_duplicate", "sad", "->", "-", "2"] and "cross-label" in lines[2]
    assert lines[3].startswith("3 of 3 finding(s) shown; 0 decided already")


def test_kind_label_and_limit_filter_the_listing(audited, capsys):
    assert main(["audit", RUN_ID, "--kind", "outlier"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[:-1]] == ["outlier"]

    assert main(["audit", RUN_ID, "--label", "sad", "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["outlier"] and lines[-1].startswith("1 of 2")


def test_json_gives_one_object_a_line(audited, capsys):
    assert main(["--json", "audit", RUN_ID, "--kind", "label_error"]) == 0

    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert entries[0]["finding"]["suggested_label"] == "sad" and "thumbnail_url" not in entries[0]["finding"]
    assert entries[-1]["shown"] == 1 and entries[-1]["decided"] == 0


def test_a_run_without_an_audit_says_so(template_tables, capsys):
    settings = get_settings()
    aws.client("s3").create_bucket(Bucket=settings.data_bucket)
    Runs(settings.runs_table).create(RUN_ID, status="InProgress", dataset="faces")

    assert main(["audit", RUN_ID]) == 2
    assert "no dataset audit" in capsys.readouterr().err
