"""`cci acls`: show the principals of a namespace and their ACLs (`streams.access`), and apply
them, with the stages' SCRAM users, on a secured cluster.

Added to the `cci` app by `register(app)`, called from `streams.cli`; like `streams.cli_tools`,
this module imports `streams.cli` only inside the command. Passwords are read from and written
to files, never printed and never taken as options.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

_REGISTERED = "_cci_security_registered"

NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="topic namespace (default: CCI_NAMESPACE or cci)"),
]


def acls(
    namespace: NamespaceOpt = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply", help="create the ACLs on the cluster (connect as a super user: admin)"
        ),
    ] = False,
    users_dir: Annotated[
        Path | None,
        typer.Option(
            "--users-dir",
            help="with --apply, also create each principal's SCRAM user, its password read "
            "from DIR/<user>.password (written there, mode 0600, when missing)",
            metavar="DIR",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Print each principal of the namespace with its ACLs, derived from what the stages of the
    topology read and write (CCI_FUSED_ASSESSMENT chooses it); with --apply, create them on the
    cluster."""
    from streams.access import apply_acls, principals, rules, upsert_users, user_passwords
    from streams.cli import _broker_call, _require_broker, fail, load_settings

    if users_dir is not None and not apply:
        fail("--users-dir creates users on the cluster: add --apply")
    settings = load_settings(namespace)
    found = principals(settings.namespace, settings.fused_assessment)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "user": p.user,
                        "role": p.role,
                        "acls": [asdict(rule) for rule in rules(p.acls)],
                    }
                    for p in found
                ],
                indent=2,
            )
        )
    else:
        # Named in the title: the same namespace has other principals in the other topology.
        shape = "fused topology" if settings.fused_assessment else "four stages"
        table = Table(title=f"ACLs of namespace {settings.namespace}, {shape} (ALLOW, any host)")
        for column in ("principal", "resource", "pattern", "name", "operations"):
            table.add_column(column, no_wrap=True)
        for p in found:
            for rule in rules(p.acls):
                table.add_row(
                    rule.principal,
                    rule.resource_type,
                    rule.pattern_type,
                    rule.resource_name,
                    ", ".join(rule.operations),
                )
        console = Console()
        if not console.is_terminal:
            # Piped or redirected: whole names rather than a table cut to 80 columns.
            console.width = max(console.width, 160)
        console.print(table)
    if not apply:
        return
    from streams.admin import admin_client

    _require_broker(settings)
    admin = admin_client(settings)
    console = Console(stderr=True)
    if users_dir is not None:
        try:
            passwords = user_passwords(users_dir, [p.user for p in found])
        except OSError as exc:
            fail(f"{users_dir}: {exc.strerror or exc}")
        users = _broker_call(lambda: upsert_users(admin, passwords, settings.sasl_mechanism))
        console.print(f"{len(users)} SCRAM users set, passwords in {users_dir}")
    created = _broker_call(lambda: apply_acls(admin, [a for p in found for a in p.acls]))
    console.print(f"{created} ACLs applied to namespace {settings.namespace}")


def register(app: typer.Typer) -> None:
    """Add `acls` to `app` (once, however often it is called)."""
    if getattr(app, _REGISTERED, False):
        return
    app.command()(acls)
    setattr(app, _REGISTERED, True)
