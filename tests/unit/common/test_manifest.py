"""The manifest schema: records and their lines, malformed lines, and the replay into the dataset's state."""

from __future__ import annotations

import json

import pytest

from imgclf.manifest import (
    AmbiguousRecord,
    EditRecord,
    ImageRecord,
    MalformedRecord,
    from_line,
    parse_lines,
    parse_objects,
    replay,
    to_line,
)

SHA = "9f2c1e0b7a3d" + "0" * 52
OTHER = "0b7c41e2d9aa" + "1" * 52
KEY = f"datasets/obama/happy/happy-{SHA[:12]}.jpg"
# Lines exactly as the collector and imgclf.datasets wrote them before the schema existed.
COLLECTED = {"sha256": SHA, "label": "happy", "key": KEY, "source": "ddg", "query": "barack obama happy",
             "url": "https://example.com/a.png", "width": 1024, "height": 683, "bytes": 187213, "format": "jpeg",
             "original": {"format": "png", "width": 2400, "height": 1600, "bytes": 4518811},
             "collected_at": "2025-01-31T10:12:03.123+00:00", "run": "exec-1"}
AMBIGUOUS = {"sha256": SHA, "ambiguous": True, "labels": ["dancing", "happy"],
             "collected_at": "2025-01-31T10:12:04.000+00:00", "run": "exec-1"}
RELABEL = {"edit": "relabel", "sha256": SHA, "key": KEY, "label": "happy", "by": "alice",
           "at": "2026-11-29T23:15:00.123+00:00", "reason": "frowning", "to_label": "sad",
           "to_key": f"datasets/obama/sad/sad-{SHA[:12]}.jpg"}
# An image record as the collector writes it now: its perceptual hashes, and the near-duplicate group it joined.
GROUPED = {**COLLECTED, "sha256": OTHER, "key": f"datasets/obama/happy/happy-{OTHER[:12]}.jpg",
           "phash": "c3a5f00f1e2d3b4a", "phash_mirror": "96f0a55a4b786e1f", "near_duplicate_of": SHA}
DELETE = {"edit": "delete", "sha256": SHA, "key": KEY, "label": "happy", "by": "bob",
          "at": "2026-11-29T23:16:00.000+00:00", "reason": ""}


def image(sha: str = SHA, label: str = "happy") -> ImageRecord:
    return ImageRecord(sha, label, key=f"datasets/obama/{label}/{label}-{sha[:12]}.jpg", url="https://example.com/x")


def edit(action: str, sha: str = SHA, label: str = "happy", to_label: str | None = None,
         to_key: str | None = None) -> EditRecord:
    return EditRecord(action, sha, f"datasets/obama/{label}/{label}-{sha[:12]}.jpg", label, by="alice",
                      at="2026-12-01T00:00:00.000+00:00", to_label=to_label, to_key=to_key)


@pytest.mark.parametrize("written", [COLLECTED, GROUPED, AMBIGUOUS, RELABEL, DELETE],
                         ids=["image", "image-with-phash", "ambiguous", "relabel", "delete"])
def test_every_record_written_today_reads_back_and_writes_the_same_line(written):
    # GIVEN a manifest line in today's on-disk format
    line = json.dumps(written, ensure_ascii=False)

    # WHEN it is parsed and written again
    record = from_line(line)

    # THEN nothing is lost or added
    assert json.loads(to_line(record)) == written
    assert from_line(to_line(record)) == record


def test_unset_fields_are_left_out_of_the_line():
    # GIVEN a delete (no new label) and an image known only by its hash and label
    # WHEN they are written
    # THEN the line holds only what was set
    assert "to_label" not in json.loads(to_line(edit("delete")))
    assert json.loads(to_line(ImageRecord(SHA, "happy"))) == {"sha256": SHA, "label": "happy"}


def test_labels_outside_ascii_are_written_as_they_are():
    assert "blåbær" in to_line(ImageRecord(SHA, "blåbær"))


@pytest.mark.parametrize(("line", "reason"), [
    ("{broken", "not JSON"),
    ('"a string"', "not a JSON object"),
    (json.dumps({"sha256": SHA, "deleted": True}), "no record of the manifest schema"),
    (json.dumps({"sha256": SHA, "relabel": "sad"}), "no record of the manifest schema"),
    (json.dumps({"label": "happy", "key": KEY}), "image record: 'sha256' is missing"),
    (json.dumps({**COLLECTED, "width": "wide"}), "image record: 'width' must be an integer"),
    (json.dumps({**COLLECTED, "bytes": True}), "image record: 'bytes' must be an integer"),
    (json.dumps({**GROUPED, "phash": "c3a5"}), "image record: 'phash' must be 16 lowercase hex digits"),
    (json.dumps({**GROUPED, "phash_mirror": "G" * 16}), "image record: 'phash_mirror' must be 16 lowercase hex"),
    (json.dumps({**GROUPED, "near_duplicate_of": 7}), "image record: 'near_duplicate_of' must be a string"),
    (json.dumps({**AMBIGUOUS, "ambiguous": False}), "ambiguous record: 'ambiguous' must be true"),
    (json.dumps({**AMBIGUOUS, "labels": "happy"}), "ambiguous record: 'labels' must be a list"),
    (json.dumps({**RELABEL, "edit": "rename"}), "edit record: 'edit' must be one of delete, relabel, keep"),
    (json.dumps({k: v for k, v in RELABEL.items() if k != "to_label"}), "edit record: a relabel needs 'to_label'"),
    (json.dumps({k: v for k, v in DELETE.items() if k != "by"}), "edit record: 'by' is missing"),
    (json.dumps({**DELETE, "key": ""}), "edit record: 'key' is empty"),
])
def test_a_malformed_line_says_why(line, reason):
    with pytest.raises(MalformedRecord, match=reason):
        from_line(line)


def test_malformed_lines_are_skipped_and_counted_with_their_line_numbers():
    # GIVEN a manifest with a broken line and a blank one between good ones
    lines = [json.dumps(COLLECTED), "", "{broken", json.dumps(DELETE)]

    # WHEN it is parsed
    parsed = parse_lines(lines)

    # THEN the good records come out in order and the broken one is reported by its line
    assert [type(r).__name__ for r in parsed.records] == ["ImageRecord", "EditRecord"]
    assert [str(p).split(":")[0] for p in parsed.problems] == ["line 3"]


def test_records_already_decoded_are_parsed_too():
    parsed = parse_objects([COLLECTED, {"sha256": SHA}, RELABEL])
    assert len(parsed.records) == 2 and str(parsed.problems[0]).startswith("record 2: no record of the manifest schema")


def test_an_edit_is_checked_when_it_is_made_too():
    with pytest.raises(MalformedRecord, match="needs 'to_label'"):
        edit("relabel")
    with pytest.raises(MalformedRecord, match="only a relabel"):
        edit("delete", to_label="sad")


def test_relabel_then_delete_leaves_the_image_deleted():
    # GIVEN an image relabelled, then deleted
    records = [image(), edit("relabel", to_label="sad", to_key="datasets/obama/sad/x.jpg"),
               edit("delete", label="sad")]

    # WHEN the manifest is replayed
    state = replay(records)

    # THEN it is gone, and the delete is what says so
    assert SHA not in state.images and state.deleted[SHA] == records[2] and not state.refused


def test_delete_then_relabel_is_refused():
    # GIVEN an image deleted, then relabelled by an editor who had not seen the delete
    records = [image(), edit("delete"), edit("relabel", to_label="sad")]

    # WHEN the manifest is replayed
    state = replay(records)

    # THEN it stays deleted and the relabel is refused, with the reason
    assert SHA not in state.images and SHA in state.deleted
    assert state.refused == [(records[2], "deleted earlier")]


def test_a_relabel_moves_the_image_and_keeps_its_provenance():
    collected = image()
    state = replay([collected, edit("relabel", to_label="sad", to_key="datasets/obama/sad/sad-x.jpg")])
    moved = state.images[SHA]
    assert (moved.label, moved.key, moved.collected) == ("sad", "datasets/obama/sad/sad-x.jpg", collected)
    assert state.find_key("datasets/obama/sad/sad-x.jpg") == moved and state.find_key(collected.key) is None


def test_a_relabel_without_a_new_key_leaves_the_image_where_it_is():
    state = replay([image(), edit("relabel", to_label="sad")])
    assert (state.images[SHA].label, state.images[SHA].key) == ("sad", image().key)


def test_keep_changes_nothing():
    assert replay([image(), image(OTHER, "sad"), edit("keep")]).images == replay([image(), image(OTHER, "sad")]).images


def test_an_edit_of_an_image_never_collected_is_refused():
    state = replay([edit("delete")])
    assert not state.images and not state.deleted and state.refused[0][1] == "no such image in the manifest"


def test_an_ambiguity_mark_holds_wherever_it_was_written():
    # GIVEN one image marked ambiguous before its record, another after
    records = [AmbiguousRecord(SHA, ("happy", "sad")), image(), image(OTHER, "sad"), AmbiguousRecord(OTHER, ("sad",))]

    # WHEN the manifest is replayed
    state = replay(records)

    # THEN both are marked, with the labels they were found for
    assert state.images[SHA].ambiguous and state.images[OTHER].ambiguous
    assert state.ambiguous == {SHA: {"happy", "sad"}, OTHER: {"sad"}}


def test_an_image_collected_again_after_a_delete_is_back():
    state = replay([image(), edit("delete"), image()])
    assert SHA in state.images and SHA not in state.deleted


def grouped(sha: str, of: str | None, label: str = "happy") -> ImageRecord:
    return ImageRecord(sha, label, key=f"datasets/obama/{label}/{label}-{sha[:12]}.jpg", phash="0" * 16,
                       phash_mirror="f" * 16, near_duplicate_of=of)


def test_the_new_fields_survive_a_round_trip_and_old_lines_have_none():
    # GIVEN an image record with perceptual hashes and a group, and one written before they existed
    # WHEN both are read back
    record, old = from_line(json.dumps(GROUPED)), from_line(json.dumps(COLLECTED))

    # THEN the new one keeps its hashes and group, and the old one has none of them
    assert (record.phash, record.phash_mirror, record.near_duplicate_of) == (
        "c3a5f00f1e2d3b4a", "96f0a55a4b786e1f", SHA)
    assert (old.phash, old.phash_mirror, old.near_duplicate_of) == (None, None, None)
    assert from_line(to_line(record)) == record


def test_near_duplicate_groups_are_the_connected_components_of_the_pointers():
    # GIVEN a picture with two copies pointing to it, a copy of a copy, a lone image and a pair of other labels
    a, b, c, d, e, f, g = (f"{n:x}" * 64 for n in range(1, 8))
    records = [grouped(a, None), grouped(b, a), grouped(c, None), grouped(d, a), grouped(e, b),
               grouped(f, None, "sad"), grouped(g, f, "sad")]

    # WHEN the manifest is replayed
    state = replay(records)

    # THEN there are two groups, members in manifest order, and the lone image is in none
    assert state.near_duplicate_groups() == [[a, b, d, e], [f, g]]


def test_a_deleted_member_still_links_its_group_and_is_left_out_of_it():
    # GIVEN a picture and two copies pointing to it, then the picture deleted, and a pair whose copy was deleted
    a, b, c, d, e = (f"{n:x}" * 64 for n in range(1, 6))
    records = [grouped(a, None), grouped(b, a), grouped(c, a), edit("delete", a),
               grouped(d, None), grouped(e, d), edit("delete", e)]

    # WHEN the manifest is replayed
    state = replay(records)

    # THEN the two copies are still one group; the pair left with one image is no group
    assert state.near_duplicate_groups() == [[b, c]]


def test_a_manifest_without_perceptual_hashes_has_no_groups():
    assert replay([image(), image(OTHER, "sad")]).near_duplicate_groups() == []
