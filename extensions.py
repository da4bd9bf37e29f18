"""Flask extensions, created unbound and bound in create_app()."""

from __future__ import annotations

import functools
import time

import flask_limiter
from flask import Flask, current_app, request
from flask.globals import request_ctx
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from limits.storage import MemoryStorage

from models.base import Base

_CHECKED = "_rate_limits_checked"


class SweptMemoryStorage(MemoryStorage):
    """limits' in-process storage (`memory://`), clearing out expired
    counters at most once a second.

    limits starts a thread to do so 10 ms after a hit whenever the previous
    one has ended: about every other signup under load, a thread start on
    the request's path. Reads check expiry themselves, so the sweep only
    frees memory; a stale key now lingers a second at most.
    """

    SWEEP_SECONDS = 1.0

    def __init__(self, *args, **kwargs) -> None:
        self._next_sweep = 0.0
        super().__init__(*args, **kwargs)

    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            super()._MemoryStorage__schedule_expiry()


class Limiter(flask_limiter.Limiter):
    """Flask-Limiter, doing its per-request work only for requests that have
    a limit to check.

    A limit decorating a view is checked by its decorator; the pass before
    every request only adds default, application, blueprint and meta limits.
    With none of those configured it found nothing, and its after-request and
    teardown hooks (rate-limit headers, clearing that state) had nothing to
    do: together a fifth of an article page.
    """

    def init_app(self, app: Flask) -> None:
        super().init_app(app)
        if type(self._storage) is MemoryStorage:
            self._storage = SweptMemoryStorage("memory://", **self._storage_options)
            self._limiter = type(self._limiter)(self._storage)
        after = app.after_request_funcs.setdefault(None, [])
        for i, fn in enumerate(after):
            if isinstance(fn, functools.partial) and fn.args == (self,):
                after[i] = self._only_when_checked(fn)
        teardown = app.teardown_request_funcs.setdefault(None, [])
        for i, fn in enumerate(teardown):
            if getattr(fn, "__self__", None) is self:
                teardown[i] = self._only_when_checked(fn)

    @staticmethod
    def _only_when_checked(hook):
        @functools.wraps(hook)
        def run(arg):
            # Marked on the request context, where Flask-Limiter keeps its state.
            return hook(arg) if getattr(request_ctx._get_current_object(), _CHECKED, False) else arg

        return run

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        if in_middleware and not self._limits_beyond_views():
            return
        setattr(request_ctx._get_current_object(), _CHECKED, True)
        super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)

    def _limits_beyond_views(self) -> bool:
        manager = self.limit_manager
        return bool(
            manager._default_limits
            or manager._application_limits
            or manager._blueprint_limits
            or manager._endpoint_hints
            or self._meta_limits
        )


class CSRF(CSRFProtect):
    """Flask-WTF's CSRFProtect, asked about exemptions only for the methods
    it checks: a GET (every page view) has nothing to check."""

    def protect(self, apply_exemptions: bool = False) -> None:
        if apply_exemptions and request.method not in current_app.config["WTF_CSRF_METHODS"]:
            return
        super().protect(apply_exemptions=apply_exemptions)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
csrf = CSRF()
limiter = Limiter(get_remote_address)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to see that page."
login_manager.login_message_category = "info"
