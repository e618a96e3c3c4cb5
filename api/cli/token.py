"""``shardtrain token``: API tokens for tenants, straight in the database (no server needed)."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.output import fail
from db.engine import session_scope
from db.migrate import upgrade
from db.queries.tenants import create_tenant, issue_token, revoke_token

app = typer.Typer(no_args_is_help=True, help="Create and revoke API tokens.")


@app.command()
def create(
    tenant: Annotated[str, typer.Option(help="Tenant name; created if it does not exist.")],
) -> None:
    """Print a new token of TENANT (only its digest is stored: keep it now)."""
    if not tenant.strip() or tenant != tenant.strip():
        raise fail(f"--tenant {tenant!r}: a tenant name is not empty and has no surrounding "
                   "spaces", 2)
    # Idempotent: a no-op on a database that is already at the latest revision.
    upgrade()
    with session_scope() as session:
        token = issue_token(session, tenant=create_tenant(session, name=tenant))
    typer.echo(token)


@app.command()
def revoke(token: Annotated[str, typer.Argument(help="The token to revoke.")]) -> None:
    """Revoke TOKEN: requests carrying it get 401 from now on."""
    with session_scope() as session:
        revoked = revoke_token(session, token=token)
    if not revoked:
        typer.echo("error: unknown or already revoked token", err=True)
        raise typer.Exit(1)
    typer.echo("revoked")
