"""GET /api/v1/docs: the API reference as a plain HTML page, made on the
server from the OpenAPI document (no script, no CDN: it works under the
site's CSP and offline)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from web import problems

bp = Blueprint("api-reference", __name__, url_prefix="/api/v1")

METHODS = ("get", "post", "put", "patch", "delete")


def _type(schema: dict, components: dict) -> str:
    """A schema in a few words: 'string (date)', 'array of Lead', 'one of a, b'."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"] if v is not None)
    kind = schema.get("type", "object")
    if kind == "array":
        return "array of " + _type(schema.get("items", {}), components)
    if schema.get("format"):
        kind = f"{kind} ({schema['format']})"
    return kind + (" or null" if schema.get("nullable") else "")


def _fields(schema: dict, components: dict) -> list[dict]:
    if "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "type": _type(prop, components),
            "required": name in required,
            "description": prop.get("description", ""),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def reference(spec: dict) -> list[dict]:
    """Each operation of the document, with its parameters, body and answers."""
    components = spec.get("components", {}).get("schemas", {})
    out = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            responses = []
            for status, answer in sorted(op.get("responses", {}).items()):
                content = answer.get("content", {})
                media, shape = next(iter(content.items()), (None, {}))
                responses.append(
                    {
                        "status": status,
                        "description": answer.get("description", ""),
                        "media": media,
                        "type": _type(shape.get("schema", {}), components) if media else "",
                    }
                )
            out.append(
                {
                    "id": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""),
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "type": _type(p.get("schema", {}), components),
                            "required": p.get("required", False),
                            "description": p.get("description", ""),
                        }
                        for p in item.get("parameters", []) + op.get("parameters", [])
                    ],
                    "body": _fields(body["schema"], components) if body else None,
                    "responses": responses,
                }
            )
    return out


@bp.get("/docs")
def docs():
    spec = current_app.extensions["leads_api"].spec.to_dict()
    schemas = spec.get("components", {}).get("schemas", {})
    return render_template(
        "api/docs.html",
        public=True,
        spec=spec,
        operations=reference(spec),
        schemas={name: _fields(s, schemas) for name, s in sorted(schemas.items())},
        problem_types=[(slug, status, title) for status, (slug, title) in problems.TITLES.items()],
    )
