"""The dashboard as a Flask blueprint.

Example::

    from redrelay.contrib.flask import RedRelay
    from redrelay.dashboard.flask import blueprint

    broker = RedRelay(app)
    app.register_blueprint(
        blueprint(broker, auth=lambda request, action: current_user.is_admin),
        url_prefix="/relay",
    )

The source is a :class:`~redrelay.Relay`, or the :class:`~redrelay.contrib.flask.RedRelay`
extension (then each app uses its own relay). Options are those of
:class:`~redrelay.dashboard.Dashboard`; with none, nobody gets in (an app has users:
pass ``auth=``; ``anonymous=True`` lets loopback clients in, for development).
"""

from __future__ import annotations

from typing import Any

try:
    from flask import Blueprint, Flask, current_app, request
    from flask import Response as FlaskResponse
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "redrelay.dashboard.flask needs Flask: pip install 'redrelay[flask]'"
    ) from exc

from ..relay import Relay
from .core import Dashboard
from .http import Request
from .wsgi import _closing

__all__ = ["blueprint"]

_KEY = "redrelay_dashboard"


def blueprint(
    source: Any, *, name: str = "redrelay_dashboard", **options: Any
) -> Blueprint:
    """A blueprint serving the dashboard (and ``/metrics``) wherever it is registered.

    :param source: a Relay, or a RedRelay extension (its relay for the current app).
    :param options: passed to :class:`~redrelay.dashboard.Dashboard`.
    """
    if not isinstance(source, Relay) and not hasattr(source, "relay_for"):
        raise TypeError(
            f"blueprint() takes a Relay or a RedRelay extension, not {type(source).__name__}"
        )
    bp = Blueprint(name, __name__)

    def board(app: Flask) -> Dashboard:
        boards: dict[str, Dashboard] = app.extensions.setdefault(_KEY, {})
        if name not in boards:
            relay = source if isinstance(source, Relay) else source.relay_for(app)
            boards[name] = Dashboard(relay, **options)
        return boards[name]

    @bp.route("/", defaults={"path": ""}, methods=["GET", "POST"])
    @bp.route("/<path:path>", methods=["GET", "POST"])
    def view(path: str) -> FlaskResponse:
        root = request.script_root + bp_prefix(request.path, path)
        req = Request(
            method=request.method,
            path="/" + path,
            root=root,
            query=request.args.to_dict(),
            form=request.form.to_dict(flat=False),
            headers={k.lower(): v for k, v in request.headers.items()},
            cookies=request.cookies.to_dict(),
            remote_addr=request.remote_addr or "",
            origin=request.host_url.rstrip("/"),
            native=request,
        )
        response = board(current_app._get_current_object()).handle(req)  # type: ignore[attr-defined]
        body = (
            response.body
            if isinstance(response.body, bytes)
            else _closing(response.body)
        )
        out = FlaskResponse(
            body, status=response.status, content_type=response.content_type
        )
        for key, value in response.headers.items():
            out.headers[key] = value
        return out

    return bp


def bp_prefix(full: str, path: str) -> str:
    """The blueprint's prefix: the request path minus the dashboard path."""
    tail = "/" + path
    prefix = full[: -len(tail)] if path and full.endswith(tail) else full
    return prefix.rstrip("/")
