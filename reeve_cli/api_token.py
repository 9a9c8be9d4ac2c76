"""The API's bearer token: from REEVE_API_TOKEN, or generated once into a file.

Stdlib only, so `reeve api token` stays fast. `reeve_cli.api` re-exports both
functions.
"""

from __future__ import annotations

import logging
import os
import secrets

from reeve_cli.config import Settings, ensure_data_dir

logger = logging.getLogger(__name__)


def read_api_token(settings: Settings) -> str | None:
    """Return the API token (REEVE_API_TOKEN, else the token file) or None."""
    if settings.api_token:
        return str(settings.api_token)
    try:
        text = settings.api_token_path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return text or None


def ensure_api_token(settings: Settings) -> str:
    """Return the API token, generating `<data_dir>/api_token` (0600) if needed."""
    token = read_api_token(settings)
    path = settings.api_token_path
    if token is not None:
        if not settings.api_token and path.stat().st_mode & 0o077:
            path.chmod(0o600)
            logger.warning("API token file %s was readable by others; now 0600", path)
        return token

    ensure_data_dir(settings)
    token = secrets.token_urlsafe(32)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        # link() fails if another process created the file first: theirs wins.
        os.link(temporary, path)
    except FileExistsError:
        existing = read_api_token(settings)
        if existing is None:  # an empty file: replace it
            os.replace(temporary, path)
        else:
            token = existing
    finally:
        temporary.unlink(missing_ok=True)

    logger.info("API token generated in %s", path)
    return token
