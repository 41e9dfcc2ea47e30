"""The collaborators of the routes: settings, AWS clients, the model, the registry and the launcher."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from imgclf import aws
from imgclf.decisions import Decisions
from imgclf.inference import Classifier
from imgclf.registry import ModelRegistry
from imgclf.settings import Settings, get_settings

from .classify import ImageLimits, Uploads
from .launcher import PipelineLauncher, launcher_for
from .sign_in import SignIn, sign_in_from


@dataclass
class Services:
    """Everything a route needs besides its request; built once per execution environment."""

    settings: Settings
    classifier: Classifier
    registry: ModelRegistry
    launcher: PipelineLauncher

    @classmethod
    def from_settings(cls, settings: Settings, *, launcher: PipelineLauncher | None = None) -> Services:
        settings.require("data_bucket", "predictions_table", "runs_table", "models_table")
        return cls(
            settings=settings,
            # Loads nothing yet: the model is fetched on the first /classify and re-checked every
            # MODEL_CHECK_SECONDS, so a promotion is served without a redeploy. Always the ONNX graph: this zip
            # function ships onnxruntime, while the fastai backend needs torch, which only the classifier's image has.
            classifier=Classifier.from_settings(settings, backend="onnx"),
            registry=ModelRegistry(settings.models_table),
            launcher=launcher or launcher_for(settings),
        )

    @property
    def s3(self) -> Any:
        # Looked up per use: imgclf.aws caches it, and tests and the local stack swap it under a live Services.
        return aws.client("s3")

    @property
    def decisions(self) -> Decisions | None:
        """The review's decisions, where the stack has the table."""
        return Decisions(self.settings.decisions_table) if self.settings.decisions_table else None

    @cached_property
    def sign_in(self) -> SignIn | None:
        """How the review page signs reviewers in, read once it is read without error (None where the stack has
        no reviewer pool)."""
        return sign_in_from(self.settings)

    @property
    def upload_signer(self) -> Any:
        """The client that signs upload URLs: the upload role's where the stack has one, since the API may
        not write under uploads/ itself."""
        role = self.settings.upload_role_arn
        return aws.role_client("s3", role, "imgclf-upload-signer") if role else self.s3

    @property
    def limits(self) -> ImageLimits:
        s = self.settings
        return ImageLimits(max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels, min_side=s.min_image_side)

    @property
    def uploads(self) -> Uploads:
        return Uploads(bucket=self.settings.data_bucket, prefix=self.settings.upload_prefix, s3=self.s3)


class ServicesFromEnvironment:
    """The app's default services factory: Services from the environment's settings, built on first use and
    again whenever the settings are reset; the launcher is this environment's unless one is given."""

    def __init__(self, launcher: PipelineLauncher | None = None):
        self.launcher = launcher
        self._built: Services | None = None

    def __call__(self) -> Services:
        settings = get_settings()
        if self._built is None or self._built.settings is not settings:
            self._built = Services.from_settings(settings, launcher=self.launcher)
        return self._built
