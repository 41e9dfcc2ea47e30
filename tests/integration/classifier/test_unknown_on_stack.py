"""Through the embedded stack, with a model fine-tuned on real photos: what it has never seen is recorded unknown."""

from __future__ import annotations

import pytest

from imgclf_api.predictions import list_predictions
from imgclf_local.samples import jpeg_bytes, shape_image
from tests.support.models import publish_model
from tests.support.tables import prediction_record

pytestmark = pytest.mark.slow

# A photo from ants-bees/valid that the photo model scores well inside its training data.
ANT_PHOTO = "ants-bees/valid/ants/1073564163_225a64f170.jpg"


@pytest.fixture(scope="module")
def promoted(stack, photo_model):
    return publish_model(photo_model, "photo-run")


def test_a_drawing_is_unknown_out_of_distribution_and_an_ant_photo_is_not(stack, promoted, datasets_dir):
    # GIVEN a promoted model fine-tuned on photos of ants and bees, with its detector
    s3 = stack.client("s3")

    # WHEN a drawn triangle and a photo of an ant are dropped into uploads/
    s3.put_object(Bucket=stack.bucket(), Key="uploads/triangle.jpg", Body=jpeg_bytes(shape_image("triangle", 0, 224)))
    s3.put_object(Bucket=stack.bucket(), Key="uploads/ant.jpg", Body=(datasets_dir / ANT_PHOTO).read_bytes())

    # THEN the drawing is recorded unknown, out of distribution, with its score and still its closest label
    drawing = stack.wait_until(lambda: prediction_record(stack, "uploads/triangle.jpg"), timeout=120)
    assert drawing["status"] == "classified" and drawing["model_version"] == promoted
    assert (drawing["verdict"], drawing["unknown_reason"]) == ("unknown", "out_of_distribution")
    assert drawing["ood_score"] > 1 and drawing["label"] in ("ants", "bees")

    # AND the ant photo is in distribution and answered
    photo = stack.wait_until(lambda: prediction_record(stack, "uploads/ant.jpg"), timeout=120)
    assert photo["ood_score"] < 1
    assert (photo["verdict"], photo["label"], photo.get("unknown_reason")) == ("label", "ants", None)

    # AND the listing of unknown predictions, which the review loop reads, has the drawing and not the photo
    items, _ = list_predictions(stack.table("PredictionsTable"), stack.bucket(), prefix="uploads/", limit=10,
                                verdict="unknown")
    assert [item["key"] for item in items] == ["uploads/triangle.jpg"]
