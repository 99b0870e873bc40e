"""Files generated from the code and committed (the Grafana dashboards, the Kubernetes
resources, the Compose file): one way to tell which are stale, to write them, and one command
line for each generator (`python -m streams.<generator> [--check]`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Rendered = Mapping[str, str]


def stale(rendered: Rendered, directory: Path, owned: str | None = None) -> list[str]:
    """The files of `rendered` missing under `directory` or different there; with `owned` (a
    glob of the files the generator alone writes there), also those it no longer makes."""
    changed = {
        name
        for name, text in rendered.items()
        if not (directory / name).is_file() or (directory / name).read_text("utf-8") != text
    }
    return sorted(changed | (_present(directory, owned) - set(rendered)))


def write(rendered: Rendered, directory: Path, owned: str | None = None) -> list[Path]:
    """Write `rendered` under `directory`; with `owned`, delete the files matching it that
    `rendered` no longer has, so that nothing the code stopped making lingers."""
    for name in _present(directory, owned) - set(rendered):
        (directory / name).unlink()
    written = []
    for name, text in rendered.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        written.append(path)
    return written


def _present(directory: Path, owned: str | None) -> set[str]:
    if owned is None or not directory.is_dir():
        return set()
    return {p.relative_to(directory).as_posix() for p in directory.rglob(owned)}


@dataclass(frozen=True)
class Generator:
    """What a generator's command line needs to know about it."""

    prog: str
    description: str
    what: str  # names the files in the stale message, e.g. "Kubernetes resources"
    regenerate: str  # the command that fixes a stale file
    render: Callable[[Path], Rendered]  # from the directory it writes to
    default_dir: Path
    option: str = "--out"
    option_help: str = "directory of the generated files"
    owned: str | None = None

    def main(self, argv: Sequence[str] | None = None) -> int:
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        parser.add_argument(
            "--check", action="store_true", help="write nothing; exit 1 when a file is stale"
        )
        parser.add_argument(
            self.option, dest="directory", type=Path, default=self.default_dir,
            help=self.option_help,
        )  # fmt: skip
        args = parser.parse_args(argv)
        directory: Path = args.directory
        rendered = self.render(directory)
        if args.check:
            names = stale(rendered, directory, self.owned)
            if names:
                paths = ", ".join(str(directory / name) for name in names)
                print(f"stale {self.what}: {paths}: run `{self.regenerate}`", file=sys.stderr)
                return 1
            return 0
        for path in write(rendered, directory, self.owned):
            print(path)
        return 0
