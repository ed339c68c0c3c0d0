"""Write the JSON Schema files in ``schemas/json/`` from the pydantic models.

Run ``python -m schemas.export`` after changing a model; ``tests/test_schemas_drift.py`` fails
when the files and the models disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.events import EVENT_MODELS, Event
from schemas.manifest import Manifest

JSON_DIR = Path(__file__).parent / "json"
BASE_URI = "https://services-ai.example/schemas/"


def documents() -> dict[str, dict[str, Any]]:
    """Every schema file this package publishes, by file name."""
    docs: dict[str, dict[str, Any]] = {
        "manifest.schema.json": Manifest.model_json_schema(by_alias=True),
        "event.schema.json": TypeAdapter(Event).json_schema(),
    }
    for kind, model in EVENT_MODELS.items():
        docs[f"{kind}.schema.json"] = model.model_json_schema()
    for name, doc in docs.items():
        doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        doc["$id"] = BASE_URI + name
    return docs


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    stale = []
    for name, doc in documents().items():
        path = JSON_DIR / name
        text = render(doc)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            JSON_DIR.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale schema files (run python -m schemas.export): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
