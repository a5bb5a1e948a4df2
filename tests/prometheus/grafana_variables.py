"""What Grafana's Prometheus data source does with the dashboard's variables, for the tests
that run its queries on a real Prometheus (no Grafana server can run here): resolve a
variable's own query to its options, and put chosen values into a panel's query."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

Query = Callable[[str], list[dict[str, Any]]]  # PromQL -> the result of an instant query
_REGEX_SPECIAL = re.compile(r"([$^*{}\[\]'+?.()|\\])")


def variable_values(var: dict[str, Any], query: Query) -> list[tuple[str, str]]:
    """The (text, value) options of a query variable: ``label_values(metric, label)`` or
    ``query_result(expr)``, then the variable's regex, as Grafana applies it (named groups
    ``text`` and ``value``, else the first group, else the whole match; no match drops
    the option; values are unique, in the query's order)."""
    q = var["query"]["query"]
    if m := re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q):
        metric, label = m.groups()
        found = sorted({r["metric"][label] for r in query(f"group by ({label}) ({metric})")
                        if label in r["metric"]})
    elif m := re.fullmatch(r"query_result\((.+)\)", q):
        found = [_result_line(r) for r in query(m.group(1))]
    else:
        raise ValueError(f"variable {var['name']}: {q!r} is not a query this test resolves")
    options: dict[str, str] = {}
    pattern = re.compile(var["regex"].strip("/").replace("(?<", "(?P<")) \
        if var.get("regex") else None
    for line in found:
        text = value = line
        if pattern:
            if not (m := pattern.search(line)):
                continue
            named = m.groupdict()
            value = named.get("value") or named.get("text") or \
                (m.group(1) if pattern.groups else m.group(0))
            text = named.get("text") or value
        options.setdefault(value, text)
    return [(text, value) for value, text in options.items()]


def _result_line(sample: dict[str, Any]) -> str:
    """A ``query_result`` option as Grafana writes it: ``name{a="1", b="2"} value ms``."""
    labels = sample["metric"]
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
    at, value = sample["value"]
    return f"{labels.get('__name__', '')}{{{inner}}} {value} {int(float(at) * 1000)}"


def substitute(expr: str, values: dict[str, list[str]]) -> str:
    """``expr`` with each ``$name`` replaced as Grafana does inside a PromQL regex matcher:
    one value escaped, several as ``(a|b)``."""
    for name, chosen in values.items():
        if not chosen:
            raise ValueError(f"variable {name}: no value to substitute")
        escaped = [_REGEX_SPECIAL.sub(r"\\\\\1", v) for v in chosen]
        expr = expr.replace(f"${name}", escaped[0] if len(escaped) == 1
                            else "(" + "|".join(escaped) + ")")
    if "$" in expr:
        raise ValueError(f"a variable is left in {expr!r}")
    return expr


def instant_query(base: str) -> Query:
    """Instant queries on the Prometheus at ``base``; a query it rejects fails the test."""
    def run(expr: str) -> list[dict[str, Any]]:
        url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.loads(r.read())
        assert doc["status"] == "success", (expr, doc)
        return doc["data"]["result"]
    return run
