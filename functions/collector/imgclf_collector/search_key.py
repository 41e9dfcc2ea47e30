"""The image search API key, read from SSM Parameter Store or Secrets Manager, never from the template."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from imgclf import aws
from imgclf.errors import AccessDenied, ConfigError, NotFound

_CACHE_SECONDS = 300
_cache: dict[str, tuple[float, str]] = {}
_lock = threading.Lock()


def load_search_key(name: str, *, ssm=None, secretsmanager=None) -> str:
    """The key stored under `name`: a Secrets Manager ARN or "secretsmanager:NAME", else an SSM parameter."""
    if not name:
        raise ConfigError("SEARCH_KEY_PARAMETER is not set: name the SSM parameter or secret holding the key")
    with _lock:
        cached = _cache.get(name)
        if cached and time.monotonic() - cached[0] < _CACHE_SECONDS:
            return cached[1]
    if _is_secret(name):
        key = _from_secrets_manager(
            secretsmanager or aws.client("secretsmanager"), name.removeprefix("secretsmanager:")
        )
    else:
        key = _from_ssm(ssm or aws.client("ssm"), name)
    key = key.strip()
    if not key:
        raise ConfigError(f"the search key stored under {name!r} is empty")
    with _lock:
        _cache[name] = (time.monotonic(), key)
    return key


def forget_cached_keys() -> None:
    """Drop cached keys (tests, or after a rotation)."""
    with _lock:
        _cache.clear()


def _is_secret(name: str) -> bool:
    return name.startswith("secretsmanager:") or (name.startswith("arn:") and ":secretsmanager:" in name)


def _from_ssm(ssm, name: str) -> str:
    """A SecureString (or String) parameter, decrypted."""
    with _reading(f"SSM parameter {name!r}"):
        return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]


def _from_secrets_manager(client, secret_id: str) -> str:
    """A secret string; a JSON secret gives its "key" (or "api_key") field."""
    with _reading(f"secret {secret_id!r}"):
        value = client.get_secret_value(SecretId=secret_id).get("SecretString", "")
    if value.lstrip().startswith("{"):
        try:
            fields = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"secret {secret_id!r} looks like JSON but is not: {exc}") from exc
        value = fields.get("key") or fields.get("api_key") or ""
    return value


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """aws.translated, except that a missing or forbidden key is the configuration's fault: ConfigError."""
    try:
        with aws.translated(f"reading {what}"):
            yield
    except NotFound as exc:
        raise ConfigError(f"{what} does not exist: create it or fix SEARCH_KEY_PARAMETER") from exc
    except AccessDenied as exc:
        raise ConfigError(f"{exc}: give the collector's role permission to read {what}") from exc
