"""The Hugging Face Hub side of an export: the base model given as a Hub id,
and pushing the finished export folder to a repo.

Inkstone sets HF_HUB_OFFLINE=1; then a Hub id resolves only from the local
cache, and a push stops with an error that names the repo and says where the
finished export is, so it can be uploaded later.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ExportError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_BASE_FILES = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken", "README.md", "LICENSE*"]


def hub_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "")
    if value.strip().upper() in ("1", "ON", "YES", "TRUE"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def check_repo_id(repo_id: str) -> str:
    """Fail fast (before minutes of export work) on a repo id the Hub would refuse."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise ExportError(f"--push-to-hub {repo_id!r}: not a Hub repo id; expected 'user-or-org/model-name'")
    return repo_id


def resolve_base(base) -> Path:
    """A local model folder for `base`: a folder as given, or a Hub id found under
    models/ or in the local cache (downloaded when the Hub is reachable)."""
    p = Path(str(base)).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ExportError(f"base model folder {p} has no config.json")
        return p.resolve()
    text = str(base)
    if not _REPO_ID.match(text):
        raise ExportError(f"base model not found: {text} is neither a local folder nor a Hub id ('org/name')")
    from ..model_files import find_local_model

    local = find_local_model(text, Path("models"))  # models/<name>, or the local Hugging Face cache
    if local is not None:
        return local
    from huggingface_hub import snapshot_download

    offline = hub_offline()
    try:
        folder = Path(snapshot_download(text, allow_patterns=_BASE_FILES, local_files_only=offline))
    except Exception as exc:  # LocalEntryNotFoundError, RepositoryNotFoundError, network errors
        why = ("it is not in the local Hugging Face cache and the Hub is offline (HF_HUB_OFFLINE=1)" if offline
               else f"it could not be fetched from the Hub ({type(exc).__name__}: {exc})")
        raise ExportError(f"base model {text!r} is not a local folder and {why}; "
                          "pass the base model's local folder with --base") from exc
    if not (folder / "config.json").is_file():
        raise ExportError(f"base model {text!r}: the cached snapshot {folder} has no config.json")
    return folder


def push_folder(folder: Path, repo_id: str, private: bool = False, progress=print) -> str:
    """Upload `folder` to the model repo `repo_id` (created if missing); returns its URL."""
    check_repo_id(repo_id)
    later = f"the export is complete at {folder}; upload it later with `hf upload {repo_id} {folder}`"
    if hub_offline():
        raise ExportError(f"cannot push to the Hub repo {repo_id!r}: the Hub is offline (HF_HUB_OFFLINE=1); {later}")
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi()
    try:
        progress(f"[export] pushing {folder} to the Hub repo {repo_id} ({'private' if private else 'public'})")
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                          commit_message="Upload model exported by Inkstone")
    except OfflineModeIsEnabled as exc:
        raise ExportError(f"cannot push to the Hub repo {repo_id!r}: the Hub is offline; {later}") from exc
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        hint = (" (not logged in or no write access: run `hf auth login` or set HF_TOKEN)"
                if status in (401, 403) else "")
        raise ExportError(f"cannot push to the Hub repo {repo_id!r}{hint}: {exc}; {later}") from exc
    except (OSError, httpx.TransportError) as exc:  # connection refused, DNS failure, timeouts
        raise ExportError(f"cannot push to the Hub repo {repo_id!r}: the Hub is unreachable "
                          f"({type(exc).__name__}: {exc}); {later}") from exc
    return str(url)
