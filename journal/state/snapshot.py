"""Checksummed, chunked, incremental snapshots of the state.

On disk (two LMDB databases of the journal's environment):

- ``chunks``: content-addressed blobs. Key: the 16-byte xxh3-128 digest of
  the blob; value: the blob. A *base chunk* holds up to ``chunk_items`` keys
  of one section, keys sorted; a *delta chunk* the keys of one section that
  changed since the previous snapshot, and the keys deleted. Chunks are laid
  out by column (:mod:`journal.state.columns`), so that loading 10,000 orders
  builds their decimals and maps in C loops, not one Python call per value.
- ``snapshots``: key: the covered sequence number (8-byte big-endian); value:
  an 8-byte xxh3-64 checksum of (key || manifest) followed by the CBOR
  *manifest*::

      {"v": 2, "seq": covered seq, "chain": chain value at seq,
       "schema": state schema version, "created_ns": ns,
       "sections": {name: {"base": [digest, ...], "deltas": [digest, ...],
                           "count": keys, "delta_items": keys in deltas}},
       "archive": {...}}   # what the archive holds at seq (journal.state.archive)

  Version 1 manifests (chunks as one CBOR map each: ``{key: value}`` for a base
  chunk, ``{"set": {...}, "del": [...]}`` for a delta) are still read.

A snapshot is the union of its base chunks with its delta chunks applied in
order. Saving writes only what changed: a section with no changed key reuses
the previous snapshot's entry as is; a section with few changed keys gets one
more delta chunk; a section whose deltas grew past a quarter of its size (or
past ``MAX_DELTAS`` chunks) is rewritten whole -- and chunks whose content did
not change keep their digest, so they are not written again. Old snapshots
beyond the retention count are deleted with the chunks no one references.

Every chunk is checked against its digest when loaded, and the manifest against
its checksum: a damaged snapshot is reported and skipped for an older one.
Checking a snapshot (:func:`check_all`) needs the digests only: it reads every
chunk's bytes but decodes none, so listing snapshots costs no state load.
"""

from __future__ import annotations

import bisect
import gc
import struct
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import xxhash

from ..errors import CorruptionError, DecodeError
from ..log import Tables
from ..log.codec import decode, encode
from .archive import drop_superseded
from .columns import ChunkError, decode_chunk, encode_chunk

__all__ = [
    "CHUNK_ITEMS",
    "BASE",
    "DELTA",
    "MANIFEST_VERSION",
    "MAX_DELTAS",
    "SAME",
    "Progress",
    "SnapshotInfo",
    "build",
    "check_all",
    "delete_old",
    "gc_paused",
    "list_snapshots",
    "plan",
    "read_manifest",
    "read_sections",
    "write",
]

CHUNK_ITEMS = 512
MAX_DELTAS = 8
#: The manifest version written; versions 1 and 2 are read.
MANIFEST_VERSION = 2
_READABLE_MANIFESTS = (1, 2)
_SEQ = struct.Struct(">Q")

#: ``progress(done, total)``: called as a long operation advances (see :mod:`journal.state.inspect`).
Progress = Callable[[int, int], None]


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
    #: Keys per section in the archive at ``seq`` (see :mod:`journal.state.archive`).
    archived: dict[str, int] = field(default_factory=dict)


def _digest(blob: bytes | memoryview) -> bytes:
    return xxhash.xxh3_128_digest(blob)


def _chunk_section(items: Mapping[str, Any], chunk_items: int) -> list[bytes]:
    keys = sorted(items)
    return [encode_chunk(items, keys[i : i + chunk_items]) for i in range(0, len(keys), chunk_items)]


#: How a section goes into the next snapshot: as the previous one had it, with one more
#: delta chunk, or rewritten whole (its base chunks).
SAME, DELTA, BASE = "same", "delta", "base"


def plan(
    prev: Mapping[str, Any] | None,
    sizes: Mapping[str, int],
    dirty: Mapping[str, Mapping[str, bool]],
    *,
    full: bool = False,
) -> dict[str, str]:
    """How each section (of ``sizes[name]`` keys) goes into the snapshot after ``prev``: SAME, DELTA or BASE.

    A section with no changed key keeps the previous entry; one with few
    changes gets a delta chunk; one whose deltas grew past a quarter of its
    size (or past MAX_DELTAS chunks) is rewritten. Knowing this before copying
    anything lets a save copy only the changed keys of a large section.
    """
    prev_sections = (prev or {}).get("sections", {})
    out = {}
    for name, size in sizes.items():
        changed = dirty.get(name, {})
        old = prev_sections.get(name)
        if old is not None and not full and not changed:
            out[name] = SAME
        elif (
            old is not None
            and not full
            and len(old["deltas"]) < MAX_DELTAS
            and old["delta_items"] + len(changed) <= max(64, size // 4)
        ):
            out[name] = DELTA
        else:
            out[name] = BASE
    return out


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
    modes: Mapping[str, str] | None = None,
    sizes: Mapping[str, int] | None = None,
) -> tuple[dict[str, Any], dict[bytes, bytes]]:
    """Build a manifest (and the chunks it needs) from a consistent copy of the state.

    ``prev`` is the previous snapshot's manifest (None for the first one);
    ``dirty`` the keys changed since it. With ``modes`` (from :func:`plan`) and
    ``sizes``, a DELTA section of ``sections`` need only hold its changed keys
    that still exist, and a SAME one nothing. Pure: touches no storage.
    """
    if modes is None or sizes is None:
        sizes = {name: len(items) for name, items in sections.items()}
        modes = plan(prev, sizes, dirty, full=full)
    chunks: dict[bytes, bytes] = {}
    out_sections: dict[str, Any] = {}
    prev_sections = (prev or {}).get("sections", {})
    for name, items in sections.items():
        mode = modes[name]
        if mode == SAME:
            out_sections[name] = prev_sections[name]
            continue
        if mode == DELTA:
            old = prev_sections[name]
            keys = sorted(dirty.get(name, {}))
            blob = encode_chunk(items, [k for k in keys if k in items], [k for k in keys if k not in items])
            d = _digest(blob)
            chunks[d] = blob
            out_sections[name] = {
                "base": old["base"],
                "deltas": [*old["deltas"], d],
                "count": sizes[name],
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


def _superseded(tables: Tables, seq: int) -> list[bytes]:
    try:
        return list((read_manifest(tables, seq).get("archive") or {}).get("superseded") or ())
    except (CorruptionError, DecodeError):
        return []


def delete_old(tables: Tables, keep: int, *, every: int | None = None, before: int = 0) -> int:
    """Keep the newest ``keep`` snapshots; delete the rest, unreferenced chunks and unreachable archive versions.

    With ``every``, the first snapshot of each stretch of ``every`` records
    (from seq ``every`` on) is kept too, so that the state at an old point is
    rebuilt from a snapshot near it. Snapshots older than ``before`` (records
    after them were compacted: they can no longer be replayed) go whatever
    the rest says. An archive version superseded by a write at or before the
    oldest snapshot kept can be seen by no snapshot any more (see
    :mod:`journal.state.archive`). Returns how many chunks were deleted.
    """
    seqs = list_snapshots(tables)
    kept = set(seqs[-keep:]) if keep > 0 else set()
    if every:
        stretches: set[int] = set()
        for seq in seqs:
            stretch = seq // every
            if stretch >= 1 and stretch not in stretches:
                stretches.add(stretch)
                kept.add(seq)
    kept = {seq for seq in kept if seq >= before} | set(seqs[-1:])
    doomed = [seq for seq in seqs if seq not in kept]
    if not doomed:
        return 0
    # A version archived at A and superseded at D is seen by the snapshots in [A, D): it can go
    # once no kept snapshot is in there. (One a kept older snapshot still sees stays, also after
    # D's manifest -- which lists it -- is gone: a rare, bounded leftover.)
    order = sorted(kept)
    superseded = []
    for seq in [*doomed, order[0]]:
        for entry in _superseded(tables, seq):
            if type(entry) is bytes and len(entry) > 8:
                archived_at = _SEQ.unpack(entry[-8:])[0]
                at = bisect.bisect_left(order, archived_at)
                if at == len(order) or order[at] >= seq:
                    superseded.append(entry)
    drop_superseded(tables, superseded)
    for seq in doomed:
        tables.delete("snapshots", _SEQ.pack(seq))
    referenced: set[bytes] = set()
    for seq in sorted(kept):
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
    if not isinstance(manifest, dict) or manifest.get("seq") != seq:
        raise CorruptionError(f"snapshot at seq {seq}: not a snapshot manifest", seq)
    if manifest.get("v") not in _READABLE_MANIFESTS:
        raise CorruptionError(
            f"snapshot at seq {seq}: manifest version {manifest.get('v')!r}, this code reads versions "
            f"{', '.join(map(str, _READABLE_MANIFESTS))} (written by a newer tradejournal?)",
            seq,
        )
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


def _blob(tables: Tables, d: bytes, seq: int) -> bytes:
    blob = tables.get("chunks", d)
    if blob is None:
        raise CorruptionError(f"snapshot at seq {seq}: chunk {d.hex()} is missing", seq)
    if _digest(blob) != d:
        raise CorruptionError(f"snapshot at seq {seq}: chunk {d.hex()} fails its checksum", seq)
    return blob


def _chunk_v1(tables: Tables, d: bytes, seq: int) -> Any:
    blob = _blob(tables, d, seq)
    try:
        return decode(blob, check=False)
    except DecodeError as exc:
        raise CorruptionError(f"snapshot at seq {seq}: chunk {d.hex()} does not decode: {exc}", seq) from exc


def _chunk(tables: Tables, d: bytes, seq: int) -> tuple[dict[str, Any], list[str]]:
    try:
        return decode_chunk(_blob(tables, d, seq))
    except ChunkError as exc:
        raise CorruptionError(f"snapshot at seq {seq}: chunk {d.hex()} does not decode: {exc}", seq) from exc


def _section_v1(tables: Tables, name: str, sec: Mapping[str, Any], seq: int) -> dict[str, Any]:
    items: dict[str, Any] = {}
    for d in sec["base"]:
        part = _chunk_v1(tables, d, seq)
        if not isinstance(part, dict):
            raise CorruptionError(f"snapshot at seq {seq}: base chunk of {name!r} is not a map", seq)
        items.update(part)
    for d in sec["deltas"]:
        delta = _chunk_v1(tables, d, seq)
        if not isinstance(delta, dict):
            raise CorruptionError(f"snapshot at seq {seq}: delta chunk of {name!r} is not a map", seq)
        for k in delta.get("del", ()):
            items.pop(k, None)
        items.update(delta.get("set", {}))
    return items


def _section(tables: Tables, name: str, sec: Mapping[str, Any], seq: int) -> dict[str, Any]:
    items: dict[str, Any] = {}
    for d in sec["base"]:
        part, deleted = _chunk(tables, d, seq)
        if deleted:
            raise CorruptionError(f"snapshot at seq {seq}: base chunk {d.hex()} of {name!r} deletes keys", seq)
        items.update(part)
    for d in sec["deltas"]:
        part, deleted = _chunk(tables, d, seq)
        for k in deleted:
            items.pop(k, None)
        items.update(part)
    return items


def read_sections(tables: Tables, manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Rebuild the sections of a snapshot, verifying every chunk."""
    seq = manifest["seq"]
    read = _section_v1 if manifest["v"] == 1 else _section
    out: dict[str, dict[str, Any]] = {}
    with gc_paused():
        for name, sec in manifest["sections"].items():
            items = read(tables, name, sec, seq)
            if len(items) != sec["count"]:
                raise CorruptionError(
                    f"snapshot at seq {seq}: section {name!r} has {len(items)} keys, manifest says {sec['count']}", seq
                )
            out[name] = items
    return out


def check_all(tables: Tables, *, decode_chunks: bool = False, progress: Progress | None = None) -> list[SnapshotInfo]:
    """Every stored snapshot, oldest first, checked: its manifest and every chunk's digest.

    Chunks are read but not decoded (a chunk is content-addressed: its digest
    proves its bytes), so this costs what reading the chunks costs, not a
    state load; ``decode_chunks=True`` decodes every snapshot too. A damaged
    one is listed with ``ok=False`` and the problem; nothing raises.
    ``progress(done, total)`` counts chunks.
    """
    out: list[SnapshotInfo] = []
    manifests: list[tuple[int, dict[str, Any] | None, str | None]] = []
    for seq in list_snapshots(tables):
        try:
            manifests.append((seq, read_manifest(tables, seq), None))
        except (CorruptionError, DecodeError) as exc:
            manifests.append((seq, None, str(exc)))
    total = sum(len(list(_all_digests(m))) for _, m, _ in manifests if m is not None)
    done = 0
    checked: set[bytes] = set()  # chunks are shared between snapshots: check each once
    for seq, manifest, problem in manifests:
        if manifest is None:
            out.append(SnapshotInfo(seq, 0, 0, 0, {}, 0, ok=False, problem=problem))
            continue
        try:
            for d in _all_digests(manifest):
                if d not in checked:
                    _blob(tables, d, seq)
                    checked.add(d)
                done += 1
                if progress is not None and done % 64 == 0:
                    progress(done, total)
            if decode_chunks:
                read_sections(tables, manifest)
            out.append(info(manifest))
        except (CorruptionError, DecodeError) as exc:
            out.append(SnapshotInfo(seq, 0, 0, 0, {}, 0, ok=False, problem=str(exc)))
    if progress is not None:
        progress(total, total)
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
        archived=dict((manifest.get("archive") or {}).get("counts") or {}),
        **extra,
    )
