"""A check report as a page people read: the verdict, then each check with its reason and the tool's output."""

from __future__ import annotations

from jinja2 import Environment

from .models import CheckReport

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Checks of {{ report.module }}: {{ verdict }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; vertical-align: top; padding: .4rem .6rem; border-bottom: 1px solid #ddd; }
.passed { color: #17612b; } .failed { color: #a31515; } .skipped { color: #6b6b6b; }
.state { font-weight: bold; text-transform: uppercase; white-space: nowrap; }
pre { white-space: pre-wrap; background: #f5f5f5; padding: .5rem; font-size: .85em; max-height: 20rem; overflow: auto; }
</style>
</head>
<body>
<h1>{{ report.module }} <span class="{{ verdict }}">{{ verdict }}</span></h1>
<p>Version {{ report.version or "unknown" }}, checked {{ report.checked.strftime("%Y-%m-%d %H:%M UTC") }}
from <code>{{ report.source }}</code> (digest <code>{{ report.digest[:12] }}</code>).</p>
<table>
<tr><th>Result</th><th>Check</th><th>Reason</th><th>Time</th></tr>
{% for r in report.results %}
<tr id="{{ r.name }}">
<td class="state {{ r.state }}">{{ r.state }}</td>
<td>{{ r.title }}</td>
<td>{{ r.reason }}{% if r.details %}
<details><summary>Output</summary><pre>{{ r.details }}</pre></details>{% endif %}</td>
<td>{{ "%.1f"|format(r.seconds) }} s</td>
</tr>
{% endfor %}
</table>
</body>
</html>
"""

_template = Environment(autoescape=True).from_string(PAGE)


def render(report: CheckReport) -> str:
    """The report as a self-contained HTML page (no scripts, everything escaped)."""
    return _template.render(report=report, verdict="passed" if report.passed else "failed")
