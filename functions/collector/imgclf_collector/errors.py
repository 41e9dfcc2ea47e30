"""The collector's failures: one per candidate (rejections), or one for a whole search (search errors)."""

from __future__ import annotations

from imgclf.errors import ConfigError, ImgclfError, TransientError


class DownloadError(ImgclfError):
    """A candidate whose bytes could not be fetched; `transient` says whether a later run may succeed."""

    code = "download_failed"

    def __init__(
        self, reason: str, message: str, *, transient: bool = False, retry_after: float | None = None
    ):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = transient
        self.retry_after = retry_after


class SearchError(ImgclfError):
    """The search service refused the query or answered something that is not a result list."""

    code = "search_failed"


class SearchAuthError(SearchError, ConfigError):
    """The search service refused the key: retrying cannot help, the configuration must change."""

    code = "search_auth"


class SearchUnavailable(SearchError, TransientError):
    """The search service kept rate-limiting or failing after every retry: a later run may succeed."""

    code = "search_unavailable"
