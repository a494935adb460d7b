"""What an invocation carries beyond its body, shared by its senders (the client, the batch coordinator) and
the local engine (reeflab.oscar_engine) that reads it.

- the caller's own name for the input file, in a Content-Disposition header;
- an OSCAR-Batch slice: `{"reeflab_batch": {"id", "index", "start", "end"}}` as the input, and the done
  marker the worker writes for it (the coordinator resumes from those markers).
"""

from __future__ import annotations

import codecs
import posixpath
import re
import urllib.parse

BATCH_KEY = "reeflab_batch"
_FILENAME_RE = re.compile(r'filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.IGNORECASE)
# RFC 6266 / 8187: filename*=UTF-8''reef%20photo.jpg (any name, in a header's latin-1 text)
_FILENAME_STAR_RE = re.compile(r"filename\*\s*=\s*([-\w!#$%&+^`{}~]*)'[^']*'([^;\s]+)", re.IGNORECASE)


def marker_key(output_prefix: str, batch: str, start: int, end: int) -> str:
    return posixpath.join(output_prefix, ".batch", batch, "done", f"{start:09d}-{end:09d}.json")


def content_disposition(name: str) -> str:
    """The header that gives the engine (and OSCAR) the caller's own name for the file: any name, percent-encoded
    (no comma or colon left in it: oscar-python splits its `headers` string on them)."""
    return "attachment; filename*=UTF-8''" + urllib.parse.quote(name, safe="")


def given_name(disposition: str) -> str | None:
    """The caller's own name for the file, from `Content-Disposition: attachment; filename="reef.jpg"` (or
    `filename*=UTF-8''...`, which wins where both are given, as RFC 6266 says).

    Only a plain base name is kept (no folders, no control characters): it names the file in answers and errors.
    """
    extended = _FILENAME_STAR_RE.search(disposition or "")
    match = _FILENAME_RE.search(disposition or "")
    if extended:
        try:
            charset = codecs.lookup(extended.group(1) or "utf-8").name
            name = urllib.parse.unquote(extended.group(2), encoding=charset, errors="strict")
        except (LookupError, UnicodeDecodeError):
            return None
    elif match:
        name = match.group(1) if match.group(1) is not None else match.group(2)
    else:
        return None
    name = name.replace("\\", "/")
    name = name.rsplit("/", 1)[-1].strip()
    if not name or name in (".", "..") or len(name) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return None
    return name
