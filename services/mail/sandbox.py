"""The sandbox admins' templates run in: Jinja's immutable sandbox with the
bounds of services.mail.template_limits on every operator, filter, call and
loop.

Only Jinja's public API is used: the sandbox's call_binop and call hooks, the
filters mapping, and a NodeTransformer over the parsed template that routes
each loop's iterable and each `~` through a checking filter.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import Template, nodes, pass_eval_context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, soft_str

from services.mail.template_limits import (
    PRE_CHECKS,
    binop,
    checked,
    checked_or_metered,
    method_call,
    need,
    tick,
)

# What Jinja's filters call the context, evaluation context or environment
# they are handed first.
_PASSED = ("context", "eval_ctx", "environment")


def _guarded(name: str, fn: Callable) -> Callable:
    pre = PRE_CHECKS.get(name)
    signature = inspect.signature(fn) if pre else None
    # Jinja's filters that have async variants take the evaluation context
    # first without declaring it: their signature starts at the value.
    first = next(iter(signature.parameters)) if signature else ""
    hidden = int(hasattr(fn, "jinja_pass_arg") and first not in _PASSED)

    @functools.wraps(fn)  # keeps Jinja's pass_eval_context marks
    def filter_(*args, **kwargs):
        tick()
        if signature is not None:
            bound = signature.bind(*args[hidden:], **kwargs)
            bound.apply_defaults()
            pre(bound.arguments)
            args, kwargs = (*args[:hidden], *bound.args), bound.kwargs
        return checked_or_metered(fn(*args, **kwargs))

    return filter_


# --- Loops and `~`, through filters of names no template can write.

_EACH, _CONCAT = "for each", "~ join"


def _each(items: Iterable) -> Iterator:
    for item in items:
        tick()
        yield item


@pass_eval_context
def _concat(eval_ctx, items: list) -> str:
    tick()
    texts = [soft_str(item) for item in items]
    need(sum(len(t) for t in texts), "~")
    # As Jinja's own join for `~`: markup stays markup, and with it the
    # other parts are escaped.
    if eval_ctx.autoescape and any(hasattr(t, "__html__") for t in texts):
        return Markup("").join(texts)
    return "".join(texts)


class _Bounded(NodeTransformer):
    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, _EACH, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        self.generic_visit(node)
        items = nodes.List(node.nodes, lineno=node.lineno)
        return nodes.Filter(items, _CONCAT, [], [], None, None, lineno=node.lineno)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with the bounds on every operator,
    filter and call. Compile with template(env.parse(source)), which also
    bounds loops and `~`."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.filters = {name: _guarded(name, fn) for name, fn in self.filters.items()}
        self.filters[_EACH] = _each
        self.filters[_CONCAT] = _concat

    def template(self, parsed: nodes.Template) -> Template:
        """The parsed template compiled, each loop and `~` checked as it runs."""
        parsed = _Bounded().visit(parsed)
        parsed.set_environment(self)  # the nodes made above have none yet
        return self.from_string(parsed)

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        tick()
        binop(operator, left, right)
        return checked(super().call_binop(context, operator, left, right))

    def call(self, context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        tick()
        args = method_call(obj, args, kwargs)
        return checked_or_metered(super().call(context, obj, *args, **kwargs))
