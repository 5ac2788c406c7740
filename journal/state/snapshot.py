"""Checksummed, chunked, incremental snapshots of the state.

On disk (two LMDB databases of the journal's environment):

- ``chunks``: content-addressed blobs. Key: the 16-byte xxh3-128 digest of
  the blob; value: the CBOR blob. A *base chunk* is a map of up to
  ``chunk_items`` keys of one section, keys sorted; a *delta chunk* is
  ``{"set": {key: value}, "del": [key]}`` for the keys of one section that
  changed since the previous snapshot.
- ``snapshots``: key: the covered sequence number (8-byte big-endian); value:
  an 8-byte xxh3-64 checksum of (key || manifest) followed by the CBOR
  *manifest*::

      {"v": 1, "seq": covered seq, "chain": chain value at seq,
       "schema": state schema version, "created_ns": ns,
       "sections": {name: {"base": [digest, ...], "deltas": [digest, ...],
                           "count": keys, "delta_items": keys in deltas}}}

A snapshot is the union of its base chunks with its delta chunks applied in
order. Saving writes only what changed: a section with no changed key reuses
the previous snapshot's entry as is; a section with few changed keys gets one
more delta chunk; a section whose deltas grew past a quarter of its size (or
past ``MAX_DELTAS`` chunks) is rewritten whole -- and chunks whose content did
not change keep their digest, so they are not written again. Old snapshots
beyond the retention count are deleted with the chunks no one references.

Every chunk is checked against its digest when loaded, and the manifest against
its checksum: a damaged snapshot is reported and skipped for an older one.
"""

from __future__ import annotations

import gc
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import xxhash

from ..errors import CorruptionError, DecodeError
from ..log import Tables
from ..log.codec import decode, encode

__all__ = [
    "CHUNK_ITEMS",
    "MAX_DELTAS",
    "SnapshotInfo",
    "build",
    "check_all",
    "delete_old",
    "gc_paused",
    "list_snapshots",
    "read_manifest",
    "read_sections",
    "write",
]

CHUNK_ITEMS = 512
MAX_DELTAS = 8
MANIFEST_VERSION = 1
_SEQ = struct.Struct(">Q")


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot covers: ``seq``, the chain value there, the schema, its size."""

    seq: int
    chain: int
    schema: int
    created_ns: int
    counts: dict[str, int]
    chunks: int
    new_chunks: int = 0
    new_bytes: int = 0
    ok: bool = True
    problem: str | None = None


def _digest(blob: bytes | memoryview) -> bytes:
    return xxhash.xxh3_128_digest(blob)


def _chunk_section(items: Mapping[str, Any], chunk_items: int) -> list[bytes]:
    keys = sorted(items)
    return [
        encode({k: items[k] for k in keys[i : i + chunk_items]}, check=False) for i in range(0, len(keys), chunk_items)
    ]


def build(
    prev: dict[str, Any] | None,
    sections: Mapping[str, Mapping[str, Any]],
    dirty: Mapping[str, Mapping[str, bool]],
    *,
    seq: int,
    chain: int,
    schema: int,
    created_ns: int,
    full: bool = False,
    chunk_items: int = CHUNK_ITEMS,
) -> tuple[dict[str, Any], dict[bytes, bytes]]:
    """Build a manifest (and the chunks it needs) from a consistent copy of the state.

    ``prev`` is the previous snapshot's manifest (None for the first one);
    ``dirty`` the keys changed since it. Pure: touches no storage.
    """
    chunks: dict[bytes, bytes] = {}
    out_sections: dict[str, Any] = {}
    prev_sections = (prev or {}).get("sections", {})
    for name, items in sections.items():
        changed = dirty.get(name, {})
        old = prev_sections.get(name)
        if old is not None and not full and not changed:
            out_sections[name] = old
            continue
        if (
            old is not None
            and not full
            and len(old["deltas"]) < MAX_DELTAS
            and old["delta_items"] + len(changed) <= max(64, len(items) // 4)
        ):
            keys = sorted(changed)
            delta = {
                "set": {k: items[k] for k in keys if k in items},
                "del": [k for k in keys if k not in items],
            }
            blob = encode(delta, check=False)
            d = _digest(blob)
            chunks[d] = blob
            out_sections[name] = {
                "base": old["base"],
                "deltas": [*old["deltas"], d],
                "count": len(items),
                "delta_items": old["delta_items"] + len(keys),
            }
            continue
        base = []
        for blob in _chunk_section(items, chunk_items):
            d = _digest(blob)
            chunks[d] = blob
            base.append(d)
        out_sections[name] = {"base": base, "deltas": [], "count": len(items), "delta_items": 0}
    manifest = {
        "v": MANIFEST_VERSION,
        "seq": seq,
        "chain": chain,
        "schema": schema,
        "created_ns": created_ns,
        "sections": out_sections,
    }
    return manifest, chunks


def write(tables: Tables, manifest: dict[str, Any], chunks: Mapping[bytes, bytes]) -> tuple[int, int]:
    """Store a manifest and its new chunks; returns (chunks written, bytes written)."""
    n = nbytes = 0
    for d, blob in chunks.items():
        if tables.get("chunks", d) is None:
            tables.put("chunks", d, blob)
            n += 1
            nbytes += len(blob)
    key = _SEQ.pack(manifest["seq"])
    body = encode(manifest)
    tables.put("snapshots", key, _SEQ.pack(xxhash.xxh3_64_intdigest(key + body)) + body)
    return n, nbytes + len(body)


def _all_digests(manifest: Mapping[str, Any]) -> Iterator[bytes]:
    for sec in manifest.get("sections", {}).values():
        yield from sec.get("base", ())
        yield from sec.get("deltas", ())


def delete_old(tables: Tables, keep: int) -> int:
    """Keep the newest ``keep`` snapshots; delete the rest and unreferenced chunks."""
    seqs = list_snapshots(tables)
    doomed = seqs[:-keep] if keep > 0 else seqs
    if not doomed:
        return 0
    for seq in doomed:
        tables.delete("snapshots", _SEQ.pack(seq))
    referenced: set[bytes] = set()
    for seq in seqs[len(doomed) :]:
        try:
            referenced.update(_all_digests(read_manifest(tables, seq)))
        except (CorruptionError, DecodeError):
            continue
    return tables.delete_unreferenced("chunks", referenced)


def list_snapshots(tables: Tables) -> list[int]:
    """Sequence numbers of the stored snapshots, oldest first."""
    return [_SEQ.unpack(k)[0] for k in tables.keys("snapshots")]


def read_manifest(tables: Tables, seq: int) -> dict[str, Any]:
    """The manifest of snapshot ``seq``, checksum verified."""
    key = _SEQ.pack(seq)
    raw = tables.get("snapshots", key)
    if raw is None:
        raise CorruptionError(f"no snapshot at seq {seq}", seq)
    if len(raw) < 8 or xxhash.xxh3_64_intdigest(key + raw[8:]) != _SEQ.unpack_from(raw)[0]:
        raise CorruptionError(f"snapshot at seq {seq}: manifest checksum mismatch", seq)
    manifest = decode(raw[8:])
    if not isinstance(manifest, dict) or manifest.get("v") != MANIFEST_VERSION or manifest.get("seq") != seq:
        raise CorruptionError(f"snapshot at seq {seq}: not a version-{MANIFEST_VERSION} manifest", seq)
    return manifest


@contextmanager
def gc_paused() -> Iterator[None]:
    # Decoding a large state allocates millions of containers; the cyclic GC
    # would scan them again and again (roughly doubling load time).
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _chunk(tables: Tables, d: bytes, seq: int) -> Any:
    blob = tables.get("chunks", d)
    if blob is None:
        raise CorruptionError(f"snapshot at seq {seq}: chunk {d.hex()} is missing", seq)
    if _digest(blob) != d:
        raise CorruptionError(f"snapshot at seq {seq}: chunk {d.hex()} fails its checksum", seq)
    try:
        return decode(blob, check=False)
    except DecodeError as exc:
        raise CorruptionError(f"snapshot at seq {seq}: chunk {d.hex()} does not decode: {exc}", seq) from exc


def read_sections(tables: Tables, manifest: Mapping[str, Any]) -> dict[str, dict]:
    """Rebuild the sections of a snapshot, verifying every chunk."""
    seq = manifest["seq"]
    out: dict[str, dict[str, Any]] = {}
    with gc_paused():
        for name, sec in manifest["sections"].items():
            items: dict[str, Any] = {}
            for d in sec["base"]:
                part = _chunk(tables, d, seq)
                if not isinstance(part, dict):
                    raise CorruptionError(f"snapshot at seq {seq}: base chunk of {name!r} is not a map", seq)
                items.update(part)
            for d in sec["deltas"]:
                delta = _chunk(tables, d, seq)
                if not isinstance(delta, dict):
                    raise CorruptionError(f"snapshot at seq {seq}: delta chunk of {name!r} is not a map", seq)
                for k in delta.get("del", ()):
                    items.pop(k, None)
                items.update(delta.get("set", {}))
            if len(items) != sec["count"]:
                raise CorruptionError(
                    f"snapshot at seq {seq}: section {name!r} has {len(items)} keys, manifest says {sec['count']}", seq
                )
            out[name] = items
    return out


def check_all(tables: Tables) -> list[SnapshotInfo]:
    """Every stored snapshot, oldest first, checked whole (manifest and every chunk).

    A damaged one is listed with ``ok=False`` and the problem; nothing raises.
    """
    out = []
    for seq in list_snapshots(tables):
        try:
            manifest = read_manifest(tables, seq)
            read_sections(tables, manifest)
            out.append(info(manifest))
        except (CorruptionError, DecodeError) as exc:
            out.append(SnapshotInfo(seq, 0, 0, 0, {}, 0, ok=False, problem=str(exc)))
    return out


def info(manifest: Mapping[str, Any], **extra: Any) -> SnapshotInfo:
    sections = manifest.get("sections", {})
    return SnapshotInfo(
        seq=manifest["seq"],
        chain=manifest["chain"],
        schema=manifest["schema"],
        created_ns=manifest["created_ns"],
        counts={k: v["count"] for k, v in sections.items()},
        chunks=sum(len(v["base"]) + len(v["deltas"]) for v in sections.values()),
        **extra,
    )
