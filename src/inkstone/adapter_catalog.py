"""Which adapters the studio serves, by name.

Finished adapters and complete checkpoints under the adapter folders (the
training output, the models folder, and any the config adds) are found by
`checkpoints.find_adapters`; a folder outside them is served only when the
machine's owner names it (command line or config: `trusted`). A name from
the web UI or the API that is not in the catalog gets the same answer as a
missing folder, so the studio cannot be used to probe the disk.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional, Sequence, Union

from .checkpoints import AdapterError, check_adapter_dir, find_adapters
from .engine.contract import Adapter


class AdapterCatalog:
    def __init__(self, roots: Sequence[Path], max_lora_rank: int):
        self.roots = tuple(Path(r) for r in roots)
        self.max_lora_rank = max_lora_rank
        self._registered: dict[str, Path] = {}
        self._lock = threading.Lock()

    def available(self) -> dict[str, Path]:
        """Registered adapters, then every usable one found under the adapter folders."""
        found = dict(self._registered)
        for name, folder in find_adapters(self.roots).items():
            found.setdefault(name, folder)
        return found

    def names(self) -> list[str]:
        return sorted(self.available())

    def register(self, path: Union[str, Path], name: Optional[str] = None, *, trusted: bool = False) -> str:
        """Make an adapter folder servable under a name (its folder name unless given)."""
        folder = check_adapter_dir(path if trusted else self._inside_roots(path), self.max_lora_rank)
        with self._lock:
            for existing, p in self._registered.items():
                if p == folder:
                    return existing
            name = name or folder.name
            if name in self._registered:
                name = f"{name}-{len(self._registered) + 1}"
            self._registered[name] = folder
        return name

    def resolve(self, name: Optional[str]) -> Optional[Adapter]:
        """The adapter to serve for `name` (None or "": the base model)."""
        if not name:
            return None
        known = self.available()
        folder = check_adapter_dir(known[name] if name in known else self._inside_roots(name), self.max_lora_rank)
        return Adapter(name, folder)

    def _inside_roots(self, path: Union[str, Path]) -> Path:
        roots = [r.resolve() for r in self.roots]
        given = Path(path).expanduser()
        for folder in ([given] if given.is_absolute() else [r / given for r in roots]):
            folder = folder.resolve()
            if any(folder.is_relative_to(r) for r in roots) and (folder / "adapter_config.json").is_file():
                return folder
        raise AdapterError(f"no adapter named {str(path)!r} in the adapter folders "
                           f"({', '.join(str(r) for r in roots) or 'none configured'})")
