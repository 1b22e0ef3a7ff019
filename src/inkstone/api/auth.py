"""Who may call the /v1 routes: a key, or the session of a logged-in browser."""
from __future__ import annotations

import logging
import secrets
from typing import Callable, Optional

from fastapi import Request

from .errors import ApiError

log = logging.getLogger(__name__)


class KeyCheck:
    """When the app is shared (`webui.share`) and no key is set, a random key is made
    up for this run and logged once: a public link never serves the API unauthenticated.
    `guarded`: a request needs the key or, through `session_user`, the session of a
    logged-in browser (see webui/access.py); without it, only a configured key is asked for."""

    def __init__(self, api_key: Optional[str], *, shared: bool, guarded: bool,
                 session_user: Optional[Callable[[Request], Optional[str]]]):
        if not api_key and shared:
            api_key = secrets.token_urlsafe(24)
            log.warning(
                "The app is shared and no API key is set (webui.api_key / INKSTONE_WEBUI__API_KEY): "
                "the OpenAI-compatible API at /v1 accepts only this key, made up for this run: %s", api_key,
            )
        self.expected = f"Bearer {api_key}".encode() if api_key else None
        self.guarded = guarded
        self.session_user = session_user

    @property
    def required(self) -> bool:
        return self.expected is not None or self.guarded

    def __call__(self, request: Request) -> None:
        if not self.required:
            return  # loopback, no login, no key: as private as the machine
        given = request.headers.get("authorization", "")
        if self.expected is not None and given and secrets.compare_digest(given.encode(), self.expected):
            return
        if self.session_user is not None and self.session_user(request):
            return
        if not given:
            raise ApiError(401, "Missing API key: send the header 'Authorization: Bearer KEY', "
                                "or log in to the studio in this browser.", code="invalid_api_key")
        raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")


def client_of(request: Request) -> str:
    """Whom a request counts against: its key, else its address."""
    return request.headers.get("authorization") or (request.client.host if request.client else "?")
