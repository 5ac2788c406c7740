"""A stable fingerprint of a state: the digest of its full snapshot encoding."""

from __future__ import annotations

import xxhash

from journal.state import State
from journal.state import snapshot as snap


def fingerprint(state: State) -> str:
    manifest, chunks = snap.build(None, state.as_dict(), {}, seq=state.seq, chain=0, schema=0, created_ns=0)
    h = xxhash.xxh3_128()
    for name in sorted(manifest["sections"]):
        for d in manifest["sections"][name]["base"]:
            h.update(chunks[d])
    return f"{state.seq}:{h.hexdigest()}"
