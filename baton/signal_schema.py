"""The signal contract as JSON Schema, generated from the models in :mod:`baton.signals`,
for writers in R, bash or any other language (docs/user/schema/, one file per kind).

The schema says what it can: fields, types, patterns, bounds. What only the reader can
check is said in each schema's description: the file's name and folder, the paths being
on the shared drive, and a field of the lab's own whose name is a near miss of a known
one (refused with the field it meant). Regenerate the files after changing a model::

    python -m baton.signal_schema docs/user/schema
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from baton.signals import MAX_SIGNAL_BYTES, SIGNAL_TYPES, Signal

DIALECT = "https://json-schema.org/draft/2020-12/schema"
READER_ONLY = (
    "Also checked by the reader, not by this schema: the file is named {filename} and is "
    "at most {limit} bytes of UTF-8 (a leading byte-order mark is allowed) with no "
    "duplicate keys; in its place on the drive its folder is its experiment; every path it "
    "names resolves inside the shared drive; a field not listed here is kept as the lab's "
    "own unless its name is a near miss of a listed one (e.g. final_los), which is refused "
    "with the field it meant.")


def signal_schema(signal_type: type[Signal]) -> dict[str, Any]:
    """The JSON Schema of one kind of signal, from its model."""
    schema = signal_type.model_json_schema()
    doc = (signal_type.__doc__ or "").strip()
    description = READER_ONLY.format(filename=signal_type.filename, limit=MAX_SIGNAL_BYTES)
    return {"$schema": DIALECT, "$id": f"{signal_type.kind}.schema.json",
            **schema, "title": signal_type.filename,
            "description": f"{doc} {description}".strip()}


def schema_files() -> dict[str, str]:
    """File name -> text of every signal kind's schema, as published in docs/."""
    return {f"{kind}.schema.json": json.dumps(signal_schema(t), indent=2, sort_keys=True)
            + "\n" for kind, t in SIGNAL_TYPES.items()}


def main(argv: list[str] | None = None) -> int:
    """Write the schemas into an existing folder (it creates none)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m baton.signal_schema FOLDER", file=sys.stderr)
        return 2
    folder = Path(args[0])
    if not folder.is_dir():
        print(f"{folder}: not a folder", file=sys.stderr)
        return 2
    for name, text in schema_files().items():
        (folder / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
