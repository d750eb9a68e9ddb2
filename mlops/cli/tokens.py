"""``mlops tokens create|list|revoke``: API tokens for team mode (admins only)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from mlops.cli.output import console, err_console, open_registry, print_json
from mlops.errors import ConfigError
from mlops.identity import ROLE_RIGHTS, Role

tokens_app = typer.Typer(
    no_args_is_help=True,
    help="API tokens for team mode. Roles: " + "; ".join(
        f"{role.value}: {text}" for role, text in ROLE_RIGHTS.items()) + ".")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@tokens_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Who or what holds the token.")],
    role: Annotated[str, typer.Option("--role", help="viewer, developer, approver or admin.")],
    expires: Annotated[str | None, typer.Option(help="Lifetime such as 90d, 12h or 2w.")
                       ] = None,
) -> None:
    """Create a token; it is printed once, alone on the last line, and only its hash is
    kept. The first admin token of a team-mode store can be created without MLOPS_TOKEN."""
    try:
        parsed = Role.parse(role)
    except ValueError as exc:
        raise ConfigError(str(exc), fix="Pass --role viewer|developer|approver|admin.") from exc
    info, secret = _tokens().create(
        name, parsed, _duration(expires) if expires else None, allow_bootstrap=True)
    until = info.expires_at.isoformat() if info.expires_at else "never"
    err_console.print(f"token {info.token_id} for [bold]{info.name}[/] ({info.role.value}), "
                      f"expires {until}. It is shown once; store it now:")
    typer.echo(secret)


@tokens_app.command("list")
def list_tokens(as_json: JsonOpt = False) -> None:
    """Tokens (never their secrets), active and revoked."""
    tokens = _tokens().list()
    if as_json:
        print_json([t.to_dict() for t in tokens])
        return
    table = Table(title="API tokens")
    for col in ("id", "name", "role", "created", "expires", "last used", "state"):
        table.add_column(col)
    for t in tokens:
        state = "active" if t.active else ("revoked" if t.revoked_at else "expired")
        table.add_row(t.token_id, t.name, t.role.value, t.created_at.isoformat()[:19],
                      t.expires_at.isoformat()[:19] if t.expires_at else "-",
                      t.last_used_at.isoformat()[:19] if t.last_used_at else "-", state)
    console.print(table)


@tokens_app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(metavar="ID")], reason: str = "") -> None:
    """Revoke a token; its next request fails with 401."""
    info = _tokens().revoke(token_id, reason)
    console.print(f"revoked token {info.token_id} ({info.name}, {info.role.value})")


def _tokens() -> Any:
    from mlops.governance.tokens import TokenService

    return TokenService(open_registry())


def _duration(text: str) -> Any:
    from mlops.store.tokens import parse_duration

    return parse_duration(text)
