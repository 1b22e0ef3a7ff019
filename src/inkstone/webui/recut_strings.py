"""UI strings of the Recut tab, in English and Chinese (merged into i18n.py)."""
EN: dict[str, str] = {}
ZH: dict[str, str] = {}
