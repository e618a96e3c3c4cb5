"""How the client commands reach a service: its URL and token, and errors as one line.

The URL and token come from ``--url``/``--token``, else ``SHARDTRAIN_URL``/``SHARDTRAIN_TOKEN``,
else the file ``shardtrain serve`` writes (``client_config_path``). The saved token is only sent
to the saved URL: a token must never leak to a server it was not issued by.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import httpx
import typer

from api.cli.local import client_config_path
from api.cli.output import fail
from api.client import ApiError, Client
from db.settings import get_settings

UrlOption = Annotated[str | None, typer.Option(
    "--url", envvar="SHARDTRAIN_URL", show_default=False,
    help="The service, e.g. http://127.0.0.1:8000 [default: the one `shardtrain serve` saved]")]
TokenOption = Annotated[str | None, typer.Option(
    "--token", envvar="SHARDTRAIN_TOKEN", show_default=False,
    help="API token [default: the one `shardtrain serve` saved, for its URL]")]


def _saved() -> dict[str, Any]:
    path = client_config_path(get_settings())
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise fail(f"cannot read {path}: {error}") from error
    return saved if isinstance(saved, dict) else {}


def resolve(url: str | None, token: str | None) -> tuple[str, str | None]:
    """The URL and token to use, from the options (or their variables) or the saved file."""
    saved = _saved()
    url = url or saved.get("url")
    if not url:
        raise fail("no service to talk to: pass --url, set SHARDTRAIN_URL, or start one with "
                   "`shardtrain serve`")
    if token is None and saved.get("url") == url:
        token = saved.get("token")
    return url, token


@contextmanager
def connect(url: str | None, token: str | None) -> Iterator[Client]:
    """A client of the service; an API refusal or an unreachable service ends the command
    with one readable line on stderr and exit code 1."""
    url, token = resolve(url, token)
    try:
        with Client(url, token) as client:
            yield client
    except ApiError as error:
        raise fail(str(error)) from None
    except (httpx.HTTPError, ConnectionError) as error:
        raise fail(f"{url}: {error or type(error).__name__}") from None
