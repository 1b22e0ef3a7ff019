"""Data flows one way through the packages: each imports only those below it.

data → train → export; engine, memory and story records; the prompt service
over them; the writing loop (Studio, batch) over that; then the runtime that
opens it all, and the API, web UI, benchmarks and CLI on top. Imports inside
functions count as much as those at the top of a module.
"""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "inkstone"

# Lowest first. A unit may import itself and units of lower layers only; units of one
# layer do not import each other.
LAYERS = [
    {"config", "config_flags", "hardware", "offline", "process_lock", "model_files", "checkpoints",
     "prompt_format"},
    {"data"},
    {"train"},
    {"export"},
    {"engine", "memory", "story"},
    {"prompting", "adapter_catalog"},
    {"writing", "recut", "vocab", "vision"},  # the writing loop and the modes with loops of their own
    {"runtime", "system_info"},
    {"api"},
    {"webui"},
    {"bench"},
    {"cli"},
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def unit_of(module: str) -> str:
    """'inkstone.engine.contract' -> 'engine'; 'inkstone.cli' -> 'cli'."""
    return module.split(".")[1]


def imports_of(path: Path) -> set[str]:
    """Every inkstone module a file imports, anywhere in it, as absolute names."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1])  # what a relative import starts from (a package's __init__ too)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("inkstone.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                names = [name] if node.module else [f"{name}.{a.name}" for a in node.names]
            else:
                names = [node.module] if node.module and node.module.startswith("inkstone.") else []
            found |= {n for n in names if n.count(".") >= 1}
    return found


def test_every_unit_has_a_layer():
    units = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()}
    assert units <= set(RANK), f"place these in LAYERS: {sorted(units - set(RANK))}"


def test_imports_point_down_only():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        if path.parent == SRC and path.stem == "__init__":
            continue
        me = unit_of(".".join(path.relative_to(SRC.parent).with_suffix("").parts))
        for target in imports_of(path):
            other = unit_of(target)
            if other != me and RANK[other] >= RANK[me]:
                wrong.append(f"{path.relative_to(SRC)} ({me}) imports {target} ({other})")
    assert not wrong, "\n".join(wrong)
