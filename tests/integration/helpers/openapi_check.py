#!/usr/bin/env python3
"""openapi_check.py — checks an OpenAPI 3.0 document and a live server against each other.

Needs only Debian's python3-yaml and python3-jsonschema (Draft 4 validators, which OpenAPI 3.0's
Schema Object extends: `nullable` is translated, everything else is Draft 4 or ignored).

  openapi_check.py spec SPEC [--routes-from DIR]
      The document itself: its structure (the OpenAPI 3.0 objects this project uses, each with
      its required fields and no unknown keys), every Schema Object (the OpenAPI 3.0 keyword set,
      then jsonschema's Draft 4 meta-schema), every $ref resolves, path templates and path
      parameters agree, operationIds are unique, every example validates against its schema.
      With --routes-from DIR: the routes the C sources under DIR register (sh_http_route calls)
      are exactly the document's operations.
  openapi_check.py probe SPEC BASE_URL [--token T]
      Every operation of the document is served (the answer is one of its documented statuses,
      never the router's 404/405 unless documented) and every other method on its path gets the
      document's 405; paths not in the document get its 404. Each answer is validated as below.
  openapi_check.py exchanges SPEC MANIFEST
      Validates recorded answers. Each MANIFEST line is tab-separated:
        LABEL METHOD PATH STATUS CONTENT_TYPE BODY_FILE
      The status must be documented for the operation (or be the server-wide 404/405/413 of
      components/responses NotFound, MethodNotAllowed, PayloadTooLarge), the content type one of
      the response's media types, and a JSON body must validate against its schema.
  openapi_check.py request SPEC METHOD PATH CONTENT_TYPE [--invalid] BODY_FILE...
      Exit 0 when every request body validates against the operation's requestBody schema for
      that content type (with --invalid: when none does), 1 otherwise. Tests send both valid and
      invalid bodies on purpose; this says whether the document agrees.

Several commands may be given at once, separated by "--" (they run in turn).
Exit status: 0 all good, 1 a check failed (each failure printed), 2 usage.
"""
import copy
import http.client
import json
import os
import re
import sys
import urllib.parse

import jsonschema
import yaml

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SCHEMA_KEYS = {
    "title", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxProperties",
    "minProperties", "required", "enum", "type", "allOf", "oneOf", "anyOf", "not", "items",
    "properties", "additionalProperties", "description", "format", "default", "nullable",
    "discriminator", "readOnly", "writeOnly", "xml", "externalDocs", "example", "deprecated",
    "$ref",
}
SCHEMA_TYPES = {"object", "array", "string", "number", "integer", "boolean"}

# ---- the document's structure (OpenAPI 3.0, the objects this project uses) ------------------

REF = {"type": "object", "required": ["$ref"], "properties": {"$ref": {"type": "string"}},
       "additionalProperties": False}
EXT = {"^x-": {}}


def obj(required, props, extra=None):
    o = {"type": "object", "required": required, "properties": props,
         "patternProperties": dict(EXT), "additionalProperties": False}
    if extra:
        o["patternProperties"].update(extra)
    return o


MEDIA = obj([], {"schema": {"type": "object"}, "example": {}, "examples": {"type": "object"},
                 "encoding": {"type": "object"}})
CONTENT = {"type": "object", "minProperties": 1,
           "patternProperties": {"^[a-z*]+/[-a-z0-9.+*]+$": MEDIA},
           "additionalProperties": False}
RESPONSE = obj(["description"], {"description": {"type": "string"}, "content": CONTENT,
                                 "headers": {"type": "object"}, "links": {"type": "object"}})
PARAMETER = obj(["name", "in", "schema"], {
    "name": {"type": "string"}, "in": {"enum": ["query", "header", "path", "cookie"]},
    "description": {"type": "string"}, "required": {"type": "boolean"},
    "deprecated": {"type": "boolean"}, "schema": {"type": "object"}, "example": {},
    "style": {"type": "string"}, "explode": {"type": "boolean"}})
OPERATION = obj(["responses"], {
    "operationId": {"type": "string"}, "summary": {"type": "string"},
    "description": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
    "parameters": {"type": "array", "items": {"oneOf": [PARAMETER, REF]}},
    "requestBody": {"oneOf": [REF, obj(["content"], {
        "description": {"type": "string"}, "required": {"type": "boolean"},
        "content": CONTENT})]},
    "responses": {"type": "object", "minProperties": 1,
                  "patternProperties": {"^([1-5][0-9][0-9]|[1-5]XX|default)$":
                                        {"oneOf": [RESPONSE, REF]}},
                  "additionalProperties": False},
    "security": {"type": "array", "items": {"type": "object", "additionalProperties":
                                            {"type": "array", "items": {"type": "string"}}}},
    "deprecated": {"type": "boolean"}})
PATH_ITEM = obj([], dict({m: OPERATION for m in METHODS}, **{
    "summary": {"type": "string"}, "description": {"type": "string"},
    "parameters": {"type": "array", "items": {"oneOf": [PARAMETER, REF]}}}))
SECURITY_SCHEME = obj(["type"], {
    "type": {"enum": ["apiKey", "http", "oauth2", "openIdConnect"]},
    "scheme": {"type": "string"}, "bearerFormat": {"type": "string"},
    "description": {"type": "string"}, "name": {"type": "string"}, "in": {"type": "string"}})
DOCUMENT = obj(["openapi", "info", "paths"], {
    "openapi": {"type": "string", "pattern": r"^3\.0\.[0-9]+$"},
    "info": obj(["title", "version"], {"title": {"type": "string"},
                                       "version": {"type": "string"},
                                       "description": {"type": "string"}}),
    "servers": {"type": "array", "items": obj(["url"], {"url": {"type": "string"},
                                                        "description": {"type": "string"}})},
    "tags": {"type": "array", "items": obj(["name"], {"name": {"type": "string"},
                                                      "description": {"type": "string"}})},
    "security": {"type": "array"},
    "paths": {"type": "object", "patternProperties": {"^/": PATH_ITEM},
              "additionalProperties": False},
    "components": obj([], {
        "schemas": {"type": "object", "additionalProperties": {"type": "object"}},
        "responses": {"type": "object", "additionalProperties": RESPONSE},
        "parameters": {"type": "object", "additionalProperties": PARAMETER},
        "securitySchemes": {"type": "object", "additionalProperties": SECURITY_SCHEME}}),
})


class Spec:
    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.safe_load(f)
        self.path = path
        self.errors = []

    def fail(self, msg):
        self.errors.append(msg)
        print("FAIL: %s: %s" % (os.path.basename(self.path), msg))

    def pointer(self, ref):
        if not ref.startswith("#/"):
            raise KeyError("only local references are used here: " + ref)
        node = self.doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[part]
        return node

    def deref(self, node):
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            node = self.pointer(node["$ref"])
            seen += 1
            if seen > 32:
                raise KeyError("reference cycle")
        return node

    def json_schema(self, schema, depth=0):
        """An OpenAPI 3.0 Schema Object as a Draft 4 JSON Schema: references inlined,
        `nullable: true` as "or null"."""
        if depth > 64:
            raise ValueError("schema nesting too deep (a recursive schema?)")
        if isinstance(schema, list):
            return [self.json_schema(s, depth + 1) for s in schema]
        if not isinstance(schema, dict):
            return schema
        if "$ref" in schema:
            return self.json_schema(self.pointer(schema["$ref"]), depth + 1)
        out = {}
        for k, v in schema.items():
            if k in ("properties",):
                out[k] = {p: self.json_schema(s, depth + 1) for p, s in v.items()}
            elif k in ("items", "not", "additionalProperties", "allOf", "oneOf", "anyOf"):
                out[k] = self.json_schema(v, depth + 1)
            elif k in ("nullable", "example", "discriminator", "readOnly", "writeOnly", "xml",
                       "externalDocs", "deprecated") or k.startswith("x-"):
                continue
            else:
                out[k] = copy.deepcopy(v)
        if schema.get("nullable") is True:
            if "enum" in out:
                out["enum"] = out["enum"] + [None]
            out = {"anyOf": [{"type": "null"}, out]}
        return out

    def validator(self, schema):
        return jsonschema.Draft4Validator(self.json_schema(schema))

    # ---- the operations ----------------------------------------------------------------------
    def operations(self):
        for p, item in self.doc.get("paths", {}).items():
            for m in METHODS:
                if m in item:
                    yield p, m, item[m]

    def match_path(self, path):
        """The document's path template that serves `path`, or None."""
        path = urllib.parse.urlsplit(path).path
        for tmpl in self.doc.get("paths", {}):
            rx = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(tmpl)) + "$"
            if re.match(rx, path):
                return tmpl
        return None

    def response(self, method, path, status):
        """(response object, where) for an answer, or (None, why)."""
        tmpl = self.match_path(path)
        comps = self.doc.get("components", {}).get("responses", {})
        if tmpl is None:
            return (self.deref(comps["NotFound"]), "NotFound") if status == 404 else \
                (None, "%s is not in the document and the answer is %d, not 404" % (path, status))
        op = self.doc["paths"][tmpl].get(method.lower())
        if op is None:
            return (self.deref(comps["MethodNotAllowed"]), "MethodNotAllowed") if status == 405 \
                else (None, "%s %s is not in the document and the answer is %d, not 405"
                      % (method, tmpl, status))
        rs = op["responses"]
        for key in (str(status), "%dXX" % (status // 100), "default"):
            if key in rs:
                return self.deref(rs[key]), "%s %s %s" % (method.upper(), tmpl, key)
        if status == 413 and "PayloadTooLarge" in comps:
            return self.deref(comps["PayloadTooLarge"]), "PayloadTooLarge"
        return None, "%s %s: status %d is not documented (documented: %s)" % (
            method.upper(), tmpl, status, " ".join(sorted(rs)))


def media_for(content, ctype):
    """The media type entry of `content` that `ctype` (a Content-Type value) falls under."""
    base = (ctype or "").split(";")[0].strip().lower()
    if base in content:
        return base
    for mt in content:
        if mt.endswith("/*") and base.startswith(mt[:-1]):
            return mt
    return "*/*" if "*/*" in content else None


# ---- spec -------------------------------------------------------------------------------------

def check_schema_object(spec, schema, where):
    if not isinstance(schema, dict):
        spec.fail("%s: a schema must be an object" % where)
        return
    if "$ref" in schema:
        extra = set(schema) - {"$ref"}
        if extra:
            spec.fail("%s: keys beside $ref are ignored in OpenAPI 3.0: %s" % (where, sorted(extra)))
        return
    for k in schema:
        if k not in SCHEMA_KEYS and not k.startswith("x-"):
            spec.fail("%s: '%s' is not an OpenAPI 3.0 schema keyword" % (where, k))
    t = schema.get("type")
    if t is not None and (not isinstance(t, str) or t not in SCHEMA_TYPES):
        spec.fail("%s: type must be one of %s (no lists in OpenAPI 3.0)" % (where, sorted(SCHEMA_TYPES)))
    if t == "array" and "items" not in schema:
        spec.fail("%s: an array schema needs items" % where)
    if "nullable" in schema and not isinstance(schema["nullable"], bool):
        spec.fail("%s: nullable must be a boolean" % where)
    for k in ("allOf", "oneOf", "anyOf"):
        for i, s in enumerate(schema.get(k, [])):
            check_schema_object(spec, s, "%s/%s/%d" % (where, k, i))
    for k in ("items", "not"):
        if k in schema:
            check_schema_object(spec, schema[k], "%s/%s" % (where, k))
    if isinstance(schema.get("additionalProperties"), dict):
        check_schema_object(spec, schema["additionalProperties"], where + "/additionalProperties")
    for p, s in schema.get("properties", {}).items():
        check_schema_object(spec, s, "%s/properties/%s" % (where, p))
    for p in schema.get("required", []):
        if "properties" in schema and p not in schema["properties"]:
            spec.fail("%s: required '%s' is not a property" % (where, p))


def each_schema(spec):
    """(where, schema, example-or-None) for every Schema Object the document holds."""
    doc = spec.doc
    for name, s in doc.get("components", {}).get("schemas", {}).items():
        yield "components/schemas/" + name, s, s.get("example") if isinstance(s, dict) else None
    def contents(content, where):
        for mt, media in (content or {}).items():
            if "schema" in media:
                yield "%s/%s" % (where, mt), media["schema"], media.get("example")
    for name, r in doc.get("components", {}).get("responses", {}).items():
        yield from contents(r.get("content"), "components/responses/" + name)
    for p, m, op in spec.operations():
        where = "paths/%s/%s" % (p, m)
        for i, prm in enumerate(op.get("parameters", [])):
            prm = spec.deref(prm)
            yield "%s/parameters/%d" % (where, i), prm["schema"], prm.get("example")
        rb = op.get("requestBody")
        if rb:
            yield from contents(spec.deref(rb).get("content"), where + "/requestBody")
        for st, r in op["responses"].items():
            if "$ref" not in r:
                yield from contents(r.get("content"), "%s/responses/%s" % (where, st))


def check_refs(spec, node, where="#"):
    if isinstance(node, dict):
        if "$ref" in node:
            try:
                spec.pointer(node["$ref"])
            except (KeyError, TypeError) as e:
                spec.fail("%s: $ref %s does not resolve (%s)" % (where, node["$ref"], e))
        for k, v in node.items():
            check_refs(spec, v, "%s/%s" % (where, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            check_refs(spec, v, "%s/%d" % (where, i))


def source_routes(root):
    """(method, path template) pairs registered with sh_http_route() under `root`; a path whose
    last segment is '*' becomes '{}' (compared with the document's {name} segments)."""
    rx = re.compile(r'sh_http_route\s*\([^,]+,\s*"([A-Z]+)"\s*,\s*"([^"]+)"')
    out = set()
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(".c"):
                with open(os.path.join(d, f)) as fh:
                    for m, p in rx.findall(fh.read()):
                        out.add((m.lower(), re.sub(r"/\*$", "/{}", p)))
    return out


def cmd_spec(path, routes_from=None):
    spec = Spec(path)
    doc = spec.doc
    for e in sorted(jsonschema.Draft4Validator(DOCUMENT).iter_errors(doc), key=str):
        spec.fail("structure at /%s: %s" % ("/".join(map(str, e.absolute_path)), e.message))
    check_refs(spec, doc)
    if spec.errors:
        return spec
    ids = {}
    for p, m, op in spec.operations():
        oid = op.get("operationId")
        if not oid:
            spec.fail("%s %s has no operationId" % (m, p))
        elif oid in ids:
            spec.fail("operationId %s used twice" % oid)
        ids[oid] = 1
        declared = {spec.deref(x)["name"] for x in op.get("parameters", [])
                    + doc["paths"][p].get("parameters", []) if spec.deref(x)["in"] == "path"}
        for x in op.get("parameters", []):
            x = spec.deref(x)
            if x["in"] == "path" and x.get("required") is not True:
                spec.fail("%s %s: path parameter %s must be required" % (m, p, x["name"]))
        if declared != set(re.findall(r"\{([^/}]+)\}", p)):
            spec.fail("%s %s: path parameters %s do not match the template" % (m, p, sorted(declared)))
        for scheme in (k for req in op.get("security", []) for k in req):
            if scheme not in doc.get("components", {}).get("securitySchemes", {}):
                spec.fail("%s %s: unknown security scheme %s" % (m, p, scheme))
    n = 0
    for where, schema, example in each_schema(spec):
        n += 1
        check_schema_object(spec, schema, where)
        try:
            js = spec.json_schema(schema)
            jsonschema.Draft4Validator.check_schema(js)
        except (jsonschema.SchemaError, KeyError, ValueError) as e:
            spec.fail("%s: not a valid schema: %s" % (where, getattr(e, "message", e)))
            continue
        if example is not None:
            for e in jsonschema.Draft4Validator(js).iter_errors(example):
                spec.fail("%s: the example does not validate: %s" % (where, e.message))
    if routes_from:
        have = source_routes(routes_from)
        want = {(m, re.sub(r"\{[^/}]+\}", "{}", p)) for p, m, _ in spec.operations()}
        for m, p in sorted(have - want):
            spec.fail("the server (%s) serves %s %s, which the document lacks" % (routes_from, m.upper(), p))
        for m, p in sorted(want - have):
            spec.fail("the document lists %s %s, which the server (%s) does not serve" % (m.upper(), p, routes_from))
        if not have:
            spec.fail("no sh_http_route() call found under %s" % routes_from)
    if not spec.errors:
        print("ok: %s: OpenAPI %s, %d operations, %d schemas valid, every $ref resolves%s"
              % (os.path.basename(path), doc["openapi"], len(ids), n,
                 ", routes equal the server's" if routes_from else ""))
    return spec


# ---- answers ----------------------------------------------------------------------------------

def explain(e):
    """A validation error as "/where: why", looking inside anyOf/oneOf (nullable) for the branch
    that came closest."""
    def leaves(x):
        return [y for c in x.context for y in leaves(c)] if x.context else [x]
    if e.context:
        # the deepest failure, and not the "or null" branch of a nullable schema
        e = max(leaves(e), key=lambda x: (len(x.absolute_path), x.validator != "type"))
    return "/%s: %s" % ("/".join(map(str, e.absolute_path)), e.message)


def check_answer(spec, label, method, path, status, ctype, body):
    resp, where = spec.response(method, path, status)
    if resp is None:
        spec.fail("%s: %s" % (label, where))
        return
    content = resp.get("content")
    if not content:
        if body:
            spec.fail("%s: %s documents no body, got %d bytes" % (label, where, len(body)))
        return
    mt = media_for(content, ctype)
    if mt is None:
        spec.fail("%s: %s: content type %r is not one of %s" % (label, where, ctype, sorted(content)))
        return
    schema = content[mt].get("schema")
    if mt.split(";")[0].endswith("json"):
        try:
            value = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            spec.fail("%s: %s: the body is not JSON (%s): %r" % (label, where, e, body[:120]))
            return
        errs = list(spec.validator(schema).iter_errors(value)) if schema else []
        for e in errs:
            spec.fail("%s: %s: %s" % (label, where, explain(e)))
        if not errs:
            print("ok: %s: %d %s valid against %s" % (label, status, mt, where))
    else:
        print("ok: %s: %d %s (%d bytes) as %s" % (label, status, mt, len(body), where))


def cmd_exchanges(path, manifest):
    spec = Spec(path)
    with open(manifest) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            label, method, rpath, status, ctype, body_file = line.split("\t")
            with open(body_file, "rb") as b:
                body = b.read()
            check_answer(spec, label, method, rpath, int(status), ctype, body)
    return spec


def example_path(spec, tmpl, op):
    def value(name):
        for x in op.get("parameters", []):
            x = spec.deref(x)
            if x["in"] == "path" and x["name"] == name:
                return str(x.get("example", x["schema"].get("example", 0)))
        return "0"
    return re.sub(r"\{([^/}]+)\}", lambda m: value(m.group(1)), tmpl)


def fetch(base, method, path, token, body=None):
    u = urllib.parse.urlsplit(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    h = {"Authorization": "Bearer " + token} if token else {}
    if body is not None:
        h["Content-Type"] = "application/octet-stream"
    c.request(method.upper(), path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type") or "", data


def cmd_probe(path, base, token):
    spec = Spec(path)
    paths = spec.doc["paths"]
    for tmpl, item in paths.items():
        for m in ("get", "post", "put", "delete", "patch"):
            op = item.get(m)
            p = example_path(spec, tmpl, op or next(item[x] for x in METHODS if x in item))
            status, ctype, body = fetch(base, m, p, token, b"" if m in ("post", "put", "patch") else None)
            label = "probe %s %s" % (m.upper(), p)
            if op is None and status != 405:
                spec.fail("%s: not in the document, answered %d instead of 405" % (label, status))
                continue
            if op is not None and status in (404, 405) and str(status) not in op["responses"]:
                spec.fail("%s: in the document, but the server answered %d" % (label, status))
                continue
            check_answer(spec, label, m, p, status, ctype, body)
    for p in ("/", "/nope", "/v1", "/v1/", "/health/", "/v1/match/x", "/v2/match", "/V1/shards",
              "/metrics?x=1/..", "/v1/snapshots", "/v1/snapshots/0/x", "/%2e%2e/health"):
        if spec.match_path(p):
            continue
        status, ctype, body = fetch(base, "get", p, token)
        label = "probe GET %s" % p
        if status != 404:
            spec.fail("%s: not in the document, answered %d instead of 404" % (label, status))
            continue
        check_answer(spec, label, "get", p, status, ctype, body)
    return spec


def request_errors(spec, schema, mt, body):
    """Why a request body does not validate (empty: it does)."""
    if not mt.endswith("json"):
        return []
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return ["not JSON: %s" % e]
    return [explain(e) for e in spec.validator(schema).iter_errors(value)]


def cmd_request(path, method, rpath, ctype, files):
    spec = Spec(path)
    want_invalid = files[:1] == ["--invalid"]
    files = files[1:] if want_invalid else files
    tmpl = spec.match_path(rpath)
    op = spec.doc["paths"][tmpl].get(method.lower()) if tmpl else None
    rb = spec.deref(op["requestBody"]) if op and "requestBody" in op else None
    mt = media_for(rb["content"], ctype) if rb else None
    if mt is None:
        spec.fail("%s %s takes no %s body" % (method, rpath, ctype))
        return spec
    schema = rb["content"][mt].get("schema", {})
    for body_file in files:
        with open(body_file, "rb") as f:
            errs = request_errors(spec, schema, mt, f.read())
        name = os.path.basename(body_file)
        if want_invalid and not errs:
            spec.fail("request %s: valid against the document, which should refuse it" % name)
        elif not want_invalid and errs:
            spec.fail("request %s: %s" % (name, errs[0]))
        else:
            print("ok: request %s: %s" % (name, errs[0] if errs else "valid"))
    return spec


def run(argv):
    """One command (argv without the program name): 0, 1 or 2 as the exit status."""
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, path, rest = argv[0], argv[1], argv[2:]
    if cmd == "spec":
        routes = rest[1] if len(rest) == 2 and rest[0] == "--routes-from" else None
        spec = cmd_spec(path, routes)
    elif cmd == "probe" and rest:
        token = rest[2] if len(rest) == 3 and rest[1] == "--token" else None
        spec = cmd_probe(path, rest[0], token)
    elif cmd == "exchanges" and len(rest) == 1:
        spec = cmd_exchanges(path, rest[0])
    elif cmd == "request" and len(rest) >= 4:
        spec = cmd_request(path, rest[0], rest[1], rest[2], rest[3:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 1 if spec.errors else 0


def main(argv):
    """Commands separated by "--" run in turn (one interpreter start on a loaded machine); the
    exit status is the worst of theirs."""
    cmds, cur = [], []
    for a in argv[1:]:
        if a == "--":
            cmds.append(cur)
            cur = []
        else:
            cur.append(a)
    cmds.append(cur)
    return max(run(c) for c in cmds)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
