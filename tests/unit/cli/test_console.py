"""The command line's console: each event is one line, in words by default, as JSON with --json or in Lambda."""

from __future__ import annotations

import json
import logging
import uuid

from imgclf.log import get_logger
from imgclf_cli import console
from imgclf_cli.demo import Console


def service() -> str:
    """A logger name no other test has set up (Powertools configures a logger once per name)."""
    return f"unit-{uuid.uuid4().hex[:8]}"


def test_a_function_log_record_is_printed_once_in_words(capsys):
    # GIVEN a function's logger outside Lambda
    name = service()
    logger = get_logger(name)

    # WHEN it logs while the command runs
    with console.configured():
        logger.warning("disk low", extra={"free_mb": 3})

    # THEN the console shows it once, as a sentence with its fields
    assert capsys.readouterr().out.splitlines() == [f"WARNING {name}: disk low  free_mb=3"]


def test_the_commands_own_lines_are_printed_as_they_are(capsys):
    # GIVEN the demo's step console
    steps = Console(steps=2)

    # WHEN a step runs and says something
    with console.configured(), steps.step("Preparing the data"):
        steps.say("drew 12 pictures")

    # THEN the lines are the step, the detail and the duration, nothing else
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["[1/2] Preparing the data ...", "      drew 12 pictures"]
    assert lines[2].startswith("      done in ") and len(lines) == 3


def test_function_info_records_show_only_when_verbose(capsys):
    # GIVEN a function's logger
    logger = get_logger(service())

    # WHEN it logs at INFO, once quietly and once with -v
    with console.configured():
        logger.info("quiet")
    with console.configured(verbose=True):
        logger.info("loud")

    # THEN only the verbose run shows it
    assert [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()] == ["loud"]


def test_json_prints_one_object_a_line_for_steps_and_logs(capsys):
    # GIVEN a function's logger and the demo's step console
    name = service()
    logger, steps = get_logger(name), Console(steps=1)

    # WHEN both write under --json
    with console.configured(json_lines=True):
        steps.begin("Training")
        logger.error("run failed", extra={"run_id": "r1"})
        steps.end()

    # THEN every line is a JSON object carrying the structured fields
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["message"] for e in entries][:2] == ["[1/1] Training ...", "run failed"]
    assert entries[0]["step"] == 1 and entries[0]["title"] == "Training"
    assert entries[1]["logger"] == name and entries[1]["run_id"] == "r1" and entries[1]["level"] == "ERROR"
    assert "seconds" in entries[2]


def test_in_lambda_a_function_record_is_one_json_line(monkeypatch, capsys):
    # GIVEN a Lambda environment, where Powertools prints its loggers' records itself
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "imgclf-dev-collector")
    name = service()
    logger = get_logger(name)

    # WHEN a function record and a plain library record are logged under the console
    with console.configured():
        logger.warning("from the function")
        logging.getLogger("imgclf.unit.library").warning("from a library")

    # THEN each is printed once, as JSON
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(e["message"] for e in entries) == ["from a library", "from the function"]
