"""Who may reach the studio: loopback-only by default, a login for anything wider.

The rule, in one place for the web UI and the /v1 API:
- On a loopback host with no login, the studio is as private as the machine.
- A non-loopback host or a share link needs a login (refused at start otherwise).
- Whenever a login is set or the host is not loopback, /v1 needs the API key or
  the session cookie of a logged-in browser.
"""
from __future__ import annotations

import ipaddress
from typing import Callable, Optional

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def has_login(webui_cfg) -> bool:
    return bool(webui_cfg.username and webui_cfg.password)


def check_exposure(webui_cfg) -> None:
    """ValueError with what to set when the studio would be reachable by others without a login."""
    if has_login(webui_cfg):
        return
    login = ("set a login first: INKSTONE_WEBUI__USERNAME and INKSTONE_WEBUI__PASSWORD "
             "(or [webui] username/password in inkstone.toml)")
    if webui_cfg.share:
        raise ValueError(f"--share makes the studio reachable from the internet: {login}")
    if not is_loopback(webui_cfg.host):
        raise ValueError(f"host {webui_cfg.host} lets other machines reach the studio: {login}, "
                         "or serve on 127.0.0.1")


def api_guarded(webui_cfg) -> bool:
    """Whether /v1 must see a key or a logged-in session."""
    return has_login(webui_cfg) or webui_cfg.share or not is_loopback(webui_cfg.host)


def gradio_session_user(demo) -> Callable[[object], Optional[str]]:
    """The user a request's Gradio login cookie belongs to, or None."""
    def user(request) -> Optional[str]:
        app = demo.app
        cookie_id = getattr(app, "cookie_id", "")
        token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
            f"access-token-unsecure-{cookie_id}")
        return app.tokens.get(token) if token else None
    return user
