"""The digest of a stored session: what ``committed`` proves to the agent.

The controller sends ``committed`` with the last seq it stored and this digest
of the documents it holds; the agent computes the same over its journal and
prunes only when both agree, so a forged or premature ``committed`` cannot
make a rig throw away data the database never got.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from shared.documents import Document, dump_document

DIGEST_PREFIX = "sha256:"


def session_digest(documents: Iterable[Document]) -> str:
    """``sha256:<hex>`` over the documents' canonical JSON (:func:`dump_document`), in seq
    order, one per line. Both sides re-dump parsed documents, so the bytes agree."""
    h = hashlib.sha256()
    for doc in sorted(documents, key=lambda d: d.seq):
        h.update(dump_document(doc).encode())
        h.update(b"\n")
    return DIGEST_PREFIX + h.hexdigest()
