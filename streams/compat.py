"""BACKWARD compatibility of schema versions, and the lock that keeps published versions unedited.

A consumer always reads with the latest version of an event's schema (codec.py), so the latest
version must be able to read every earlier one: BACKWARD_TRANSITIVE in the registry vocabulary.
`backward_problems` applies Avro's schema-resolution rules (specification 1.11, "Schema
Resolution") to two schemas as fastavro parses them, and says where and why reading would fail,
so that the failure shows up in a test and not as a dead letter in production. Two choices are
stricter than the specification, deliberately: record, enum and fixed names are compared in full
(or through a reader alias), and a change of logical type is refused although the physical type
would resolve, because the same bytes would then mean something else (a scale change turns
12.50 EUR into 1.250 EUR).

`fingerprints.lock` holds one line per published version. Its fingerprint is a SHA-256 of the
schema file without its `doc` attributes, not the CRC-64 fingerprint that the wire carries: the
parsing canonical form behind the wire fingerprint drops logical types, defaults and aliases, so
an edit of a published decimal's scale would keep the wire fingerprint and silently change the
value of every message already written. Documentation may still be corrected in place.

Developers: `python -m streams.compat` prints every problem (exit 1 if any); `python -m
streams.compat --lock` adds the lines of new versions to the lock and never alters existing ones.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from streams.codec import SchemaCatalogue, SchemaVersion
from streams.config import ROOT

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "enum", "fixed"})
_KINDS = PRIMITIVES | NAMED | {"array", "map"}
# Writer type -> reader types that can read it (specification, "Schema Resolution").
_PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}

LOCK_NAME = "fingerprints.lock"
_LOCK_KEY = re.compile(r"^([^/\s]+)/v([1-9][0-9]*)$")
_LOCK_HEX = re.compile(r"^[0-9a-f]{64}$")

# (path below the schema node being checked, message); paths are joined on the way up so that
# the result for a pair of named types can be cached and reused wherever the pair recurs.
_Problem = tuple[str, str]


def backward_problems(reader: Any, writer: Any) -> list[str]:
    """Why `reader` (the new version) cannot read data written with `writer` (an older one).

    Both are fastavro-parsed schemas. An empty list means every datum `writer` can produce is
    readable by `reader`.
    """
    checker = _Checker(reader, writer)
    root = _root_label(checker.deref(reader, reader=True))
    return [f"{root}{path}: {message}" for path, message in checker.check(reader, writer)]


def check_catalogue(catalogue: SchemaCatalogue) -> list[str]:
    """BACKWARD_TRANSITIVE: the latest version of every event reads each of its earlier ones."""
    problems: list[str] = []
    for logical in catalogue.logical_names():
        *earlier, latest = catalogue.versions(logical)
        for old in earlier:
            problems.extend(
                f"{logical} v{latest.version} cannot read v{old.version}: {problem}"
                for problem in backward_problems(latest.schema, old.schema)
            )
    return problems


class _Checker:
    def __init__(self, reader: Any, writer: Any) -> None:
        # Collected up front: a definition can sit in a part of the schema the comparison never
        # visits (a writer-only field), yet be referenced from a part it does.
        self.reader_names = _named_types(reader)
        self.writer_names = _named_types(writer)
        self.active: set[tuple[str, str]] = set()
        self.done: dict[tuple[str, str], list[_Problem]] = {}

    def deref(self, schema: Any, *, reader: bool) -> Any:
        names = self.reader_names if reader else self.writer_names
        while True:
            if isinstance(schema, str) and schema not in PRIMITIVES:
                if schema not in names:
                    raise ValueError(f"reference to undefined type {schema!r}")
                schema = names[schema]
            elif isinstance(schema, dict) and not (
                isinstance(schema.get("type"), str) and schema["type"] in _KINDS
            ):
                schema = schema["type"]  # {"type": <reference or union>}
            else:
                return schema

    def describe(self, schema: Any, *, reader: bool) -> str:
        schema = self.deref(schema, reader=reader)
        if isinstance(schema, list):
            return "union[" + ", ".join(self.describe(b, reader=reader) for b in schema) + "]"
        kind = _kind(schema)
        if kind in ("record", "enum"):
            text = f"{kind} {schema['name']}"
        elif kind == "fixed":
            text = f"fixed {schema['name']}[{schema['size']}]"
        elif kind == "array":
            text = f"array<{self.describe(schema['items'], reader=reader)}>"
        elif kind == "map":
            text = f"map<{self.describe(schema['values'], reader=reader)}>"
        else:
            text = kind
        logical = _logical(schema)
        if logical == "decimal":
            return f"{text}(decimal {schema['precision']},{schema.get('scale', 0)})"
        return f"{text}({logical})" if logical else text

    def check(self, reader: Any, writer: Any) -> list[_Problem]:
        reader = self.deref(reader, reader=True)
        writer = self.deref(writer, reader=False)
        if isinstance(writer, list):
            # Any branch may have been written: each one must resolve.
            problems: list[_Problem] = []
            for branch in writer:
                problems.extend(self._one(reader, self.deref(branch, reader=False)))
            return problems
        return self._one(reader, writer)

    def _one(self, reader: Any, writer: Any) -> list[_Problem]:
        """`writer` is not a union here."""
        if isinstance(reader, list):
            branch = self._branch_for(reader, writer)
            if branch is None:
                return [("", f"writer {self._pair(reader, writer)}: no branch matches")]
            return self.check(branch, writer)
        reader_kind, writer_kind = _kind(reader), _kind(writer)
        if reader_kind in PRIMITIVES or writer_kind in PRIMITIVES:
            if reader_kind != writer_kind and reader_kind not in _PROMOTIONS.get(
                writer_kind, frozenset()
            ):
                return [("", f"writer {self._pair(reader, writer)}")]
            return self._logical_types(reader, writer)
        if reader_kind != writer_kind:
            return [("", f"writer {self._pair(reader, writer)}")]
        if reader_kind == "array":
            return _below("[]", self.check(reader["items"], writer["items"]))
        if reader_kind == "map":
            return _below("{}", self.check(reader["values"], writer["values"]))
        if not _names_match(reader, writer):
            return [
                (
                    "",
                    f"writer {self._pair(reader, writer)}: the names differ and no reader alias"
                    f" is {writer['name']}",
                )
            ]
        if reader_kind == "fixed":
            if reader["size"] != writer["size"]:
                return [("", f"writer {self._pair(reader, writer)}: the sizes differ")]
            return self._logical_types(reader, writer)
        if reader_kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                return [
                    (
                        "",
                        f"writer symbols {', '.join(missing)} of enum {writer['name']} are not in"
                        " the reader, whose enum has no default",
                    )
                ]
            return []
        return self._record(reader, writer)

    def _record(self, reader: Any, writer: Any) -> list[_Problem]:
        key = (reader["name"], writer["name"])
        if key in self.done:
            return self.done[key]
        if key in self.active:
            # A recursive reference: the pair is being checked further up, which reports it.
            return []
        self.active.add(key)
        problems: list[_Problem] = []
        written = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            source = written.get(field["name"])
            if source is None:
                source = next((written[a] for a in field.get("aliases", []) if a in written), None)
            where = f".{field['name']}"
            if source is not None:
                problems.extend(_below(where, self.check(field["type"], source["type"])))
            elif "default" not in field:
                problems.append((where, "new reader field without a default"))
        self.active.discard(key)
        self.done[key] = problems
        return problems

    def _branch_for(self, branches: list[Any], writer: Any) -> Any | None:
        """The reader branch that Avro (and fastavro) resolves `writer` against: the first one
        that matches it at the top level. Whether it reads it in depth is checked afterwards."""
        writer_kind = _kind(writer)
        for candidate in branches:
            branch = self.deref(candidate, reader=True)
            kind = _kind(branch)
            if kind in NAMED or writer_kind in NAMED:
                if kind == writer_kind and _names_match(branch, writer):
                    return branch
            elif kind == writer_kind or kind in _PROMOTIONS.get(writer_kind, frozenset()):
                return branch
        return None

    def _logical_types(self, reader: Any, writer: Any) -> list[_Problem]:
        reader_logical, writer_logical = _logical(reader), _logical(writer)
        if reader_logical == writer_logical == "decimal":
            wanted = (reader["precision"], reader.get("scale", 0))
            if (writer["precision"], writer.get("scale", 0)) != wanted:
                described = self.describe(writer, reader=False)
                return [
                    ("", f"writer {described} cannot be read as decimal {wanted[0]},{wanted[1]}")
                ]
        elif reader_logical != writer_logical:
            return [("", f"writer {self._pair(reader, writer)}: the logical type changed")]
        return []

    def _pair(self, reader: Any, writer: Any) -> str:
        return (
            f"{self.describe(writer, reader=False)} cannot be read as"
            f" {self.describe(reader, reader=True)}"
        )


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    return str(schema if isinstance(schema, str) else schema["type"])


def _logical(schema: Any) -> str | None:
    if isinstance(schema, dict):
        logical = schema.get("logicalType")
        return None if logical is None else str(logical)
    return None


def _names_match(reader: Any, writer: Any) -> bool:
    if reader["name"] == writer["name"]:
        return True
    # fastavro keeps aliases as written; unqualified ones are in the reader's namespace.
    namespace = reader["name"].rpartition(".")[0]
    aliases = {
        a if "." in a or not namespace else f"{namespace}.{a}" for a in reader.get("aliases", [])
    }
    return writer["name"] in aliases


def _named_types(schema: Any, names: dict[str, Any] | None = None) -> dict[str, Any]:
    names = {} if names is None else names
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, names)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in NAMED:
            names.setdefault(schema["name"], schema)
            for field in schema.get("fields", []):
                _named_types(field["type"], names)
        elif kind == "array":
            _named_types(schema["items"], names)
        elif kind == "map":
            _named_types(schema["values"], names)
        elif not isinstance(kind, str):
            _named_types(kind, names)
    return names


def _below(step: str, problems: list[_Problem]) -> list[_Problem]:
    return [(step + path, message) for path, message in problems]


def _root_label(schema: Any) -> str:
    if isinstance(schema, dict) and schema.get("type") in NAMED:
        return str(schema["name"]).rpartition(".")[2]
    return _kind(schema)


# --- The lock of published versions ----------------------------------------------------------


def lock_fingerprint(version: SchemaVersion) -> str:
    """SHA-256 of the schema file as JSON without `doc`: everything that decides how bytes read."""
    content = _without_docs(json.loads(version.path.read_text(encoding="utf-8")))
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _without_docs(schema: Any) -> Any:
    # Walks the schema grammar rather than every dict, so that a field default which happens to
    # be an object with a "doc" key keeps it.
    if isinstance(schema, list):
        return [_without_docs(branch) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    result = {k: v for k, v in schema.items() if k != "doc"}
    for key in ("type", "items", "values"):
        if key in result:
            result[key] = _without_docs(result[key])
    if isinstance(result.get("fields"), list):
        result["fields"] = [
            {k: _without_docs(v) if k == "type" else v for k, v in f.items() if k != "doc"}
            for f in result["fields"]
        ]
    return result


def _version_key(key: str) -> tuple[str, int]:
    match = _LOCK_KEY.match(key)
    return (match.group(1), int(match.group(2))) if match else (key, 0)


def _read_lock(lock_path: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """Entries by `<logical>/v<N>`, the problems of the file's form, and its lines as written."""
    entries: dict[str, str] = {}
    problems: list[str] = []
    lines = lock_path.read_text(encoding="utf-8").splitlines() if lock_path.exists() else []
    lines = [line for line in lines if line.strip()]
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if len(parts) != 2 or not _LOCK_KEY.match(parts[0]) or not _LOCK_HEX.match(parts[1]):
            problems.append(
                f"{lock_path.name}:{number}: {line!r} is not '<logical>/v<N> <sha-256 hex>'"
            )
        elif parts[0] in entries:
            problems.append(f"{lock_path.name}:{number}: {parts[0]} is locked twice")
        else:
            entries[parts[0]] = parts[1]
    keys = [line.split()[0] for line in lines]
    if keys != sorted(keys, key=_version_key):
        problems.append(f"{lock_path.name}: lines are not sorted by event and version")
    return entries, problems, lines


def lock_problems(catalogue: SchemaCatalogue, lock_path: Path) -> list[str]:
    """Versions edited after publication, versions not yet locked, locked versions deleted."""
    entries, problems, _lines = _read_lock(lock_path)
    folder = catalogue.directory.name
    present: set[str] = set()
    for version in catalogue:
        key = f"{version.logical}/v{version.version}"
        present.add(key)
        if key not in entries:
            problems.append(
                f"{folder}/{key}.avsc is not in {lock_path.name}: once it is final, run"
                " `python -m streams.compat --lock`"
            )
        elif entries[key] != lock_fingerprint(version):
            following = len(catalogue.versions(version.logical)) + 1
            problems.append(
                f"{folder}/{key}.avsc was edited after publication: publish a v{following} instead"
            )
    for key in sorted(entries.keys() - present, key=_version_key):
        problems.append(
            f"{lock_path.name} locks {key} but {folder}/{key}.avsc is gone: published versions"
            " stay, since messages written with them may still be read"
        )
    return problems


def lock_new_versions(catalogue: SchemaCatalogue, lock_path: Path) -> list[str]:
    """Add a line for every version missing from the lock; existing lines are kept verbatim."""
    entries, problems, lines = _read_lock(lock_path)
    malformed = [p for p in problems if "not sorted" not in p]
    if malformed:
        raise ValueError("; ".join(malformed))
    added = [
        f"{v.logical}/v{v.version} {lock_fingerprint(v)}"
        for v in catalogue
        if f"{v.logical}/v{v.version}" not in entries
    ]
    if added:
        ordered = sorted(lines + added, key=lambda line: _version_key(line.split()[0]))
        lock_path.write_text("".join(f"{line}\n" for line in ordered), encoding="utf-8")
    return added


def main(argv: list[str]) -> int:
    schemas = SchemaCatalogue(ROOT / "schemas")
    lock = schemas.directory / LOCK_NAME
    if argv == ["--lock"]:
        for line in lock_new_versions(schemas, lock):
            print(f"locked {line}")
        return 0
    if argv:
        print("usage: python -m streams.compat [--lock]", file=sys.stderr)
        return 2
    problems = check_catalogue(schemas) + lock_problems(schemas, lock)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
