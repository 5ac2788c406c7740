"""A FUSE file layer that keeps only what was fsynced: crash images for power-cut tests.

A passthrough file system (fusepy over libfuse2) mounted over a backing
directory. Everything works as on the backing file system, and beside it the
layer keeps what a power cut would leave under strict POSIX rules:

- per file, the content at its last ``fsync``/``fdatasync`` (or ``O_DSYNC``
  write); data written since is lost;
- per directory, the set of entries at its last ``fsync``; a file created,
  renamed or removed since keeps its old state (absent, old name, present).

:meth:`FuseLayer.image` writes that state into a fresh directory: a *crash
image*, what the disk would hold had the power gone at that instant. Real disks
on ext4 usually keep more (the journal commits metadata every few seconds),
which is what hid missing directory fsyncs (issue 11, item 2).

What LMDB needs, and holds here: ``pwrite`` and ``fdatasync`` on ``data.mdb``,
writes through an ``O_DSYNC`` descriptor for its meta pages (the kernel sends
an fsync after each), a read-only shared ``mmap`` of ``data.mdb`` and a
writable shared ``mmap`` of ``lock.mdb`` (both work because ``direct_io`` is
off: the kernel's page cache serves the mapping and FUSE fills it), POSIX
record locks and ``flock`` (handled by the kernel locally: the layer defines no
lock operations). Caveats: ``lock.mdb`` pages written through the mapping reach
the layer only on writeback, which does not matter (LMDB rebuilds the lock
file); hard links, symbolic links and extended attributes are refused; one
Python thread serves every request, so the layer is slow and meant for small
journals; an operation that fails inside the layer is logged on its stderr
(:meth:`FuseLayer.errors`), which tests check is empty.

Run as ``python -m tests.helpers.fuselayer BACKING MOUNT`` (prints ``READY``
once mounted, then answers commands on stdin: ``image DEST``, ``stats``;
end of input unmounts). Tests use :class:`FuseLayer`, which does that in a
child process: a FUSE server must never share a process with its clients.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["FuseLayer", "FuseUnavailable", "fuse_unavailable_reason"]


class FuseUnavailable(RuntimeError):
    """This machine cannot mount the layer (no /dev/fuse, no libfuse2, no permission)."""


def fuse_unavailable_reason() -> str | None:
    """Why a FUSE mount cannot work here, or None if it should."""
    if not sys.platform.startswith("linux"):
        return "FUSE layer is Linux-only"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (no FUSE in this kernel or container)"
    if os.geteuid() != 0 and shutil.which("fusermount") is None:
        return "not root and no fusermount to mount FUSE file systems"
    try:
        import fuse  # noqa: F401  (fusepy: raises OSError when libfuse2 is missing)
    except ImportError:
        return "fusepy is not installed (pip install -e '.[test]')"
    except OSError as exc:
        return f"libfuse2 is not installed ({exc}; apt-get install libfuse2)"
    return None


# -- the file system (runs in the child process) --------------------------------


class _File:
    """A regular file's durable state."""

    __slots__ = ("durable", "dirty")

    def __init__(self, content: bytes = b"") -> None:
        self.durable = bytearray(content)  # content at the last fsync
        self.dirty: list[tuple[int, int]] = []  # (offset, length) written or truncated since


class _Dir:
    """A directory's durable state."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: dict[str, _File | _Dir] = {}  # name -> node at the last fsync


def _make_layer(backing: str) -> Any:
    from fuse import Operations

    class DurableLayer(Operations):  # type: ignore[misc]
        use_ns = True

        def __init__(self, root: str) -> None:
            self.root = root
            self.mutex = threading.Lock()  # FUSE requests and control commands (not "lock": an operation name)
            self.nodes: dict[int, _File | _Dir] = {}  # backing st_ino -> node, for live names
            self.handles: dict[int, tuple[_File, bool]] = {}  # fh -> (node, every write is synced)
            self.counts: Counter[str] = Counter()  # "fsync:/path", "fsyncdir:/path", "write", ...
            self.ready = threading.Event()  # set once the kernel has sent INIT: the mount serves
            root_node = self._adopt(root)
            assert isinstance(root_node, _Dir)
            self.root_node = root_node

        def init(self, path: str) -> None:
            self.ready.set()

        # Everything already in the backing directory counts as durable.
        def _adopt(self, real: str) -> _File | _Dir:
            st = os.lstat(real)
            node: _File | _Dir
            if os.path.isdir(real):
                node = _Dir()
                for name in os.listdir(real):
                    node.entries[name] = self._adopt(os.path.join(real, name))
            else:
                with open(real, "rb") as f:
                    node = _File(f.read())
            self.nodes[st.st_ino] = node
            return node

        def __call__(self, op: str, *args: Any) -> Any:
            with self.mutex:
                return super().__call__(op, *args)

        def _real(self, path: str) -> str:
            return os.path.join(self.root, path.lstrip("/"))

        def _node(self, real: str, new: type[_File] | type[_Dir] | None = None) -> _File | _Dir:
            ino = os.lstat(real).st_ino
            node = self.nodes.get(ino)
            if node is None or (new is not None and not isinstance(node, new)):
                node = (new or (_Dir if os.path.isdir(real) else _File))()
                self.nodes[ino] = node
            return node

        def _forget(self, real: str) -> None:
            try:
                self.nodes.pop(os.lstat(real).st_ino, None)
            except FileNotFoundError:
                pass

        def _sync(self, node: _File, fd: int) -> None:
            size = os.fstat(fd).st_size
            ranges = node.dirty
            if size > len(node.durable):
                ranges = [*ranges, (len(node.durable), size - len(node.durable))]
            for offset, length in ranges:
                if offset >= size:
                    continue
                data = os.pread(fd, min(length, size - offset), offset)
                if len(node.durable) < offset + len(data):
                    node.durable.extend(bytes(offset + len(data) - len(node.durable)))
                node.durable[offset : offset + len(data)] = data
            del node.durable[size:]
            node.dirty = []

        # -- metadata
        def getattr(self, path: str, fi: Any = None) -> dict[str, Any]:
            # raw_fi: fgetattr passes the fuse_file_info, getattr None
            st = os.fstat(fi.fh) if fi else os.lstat(self._real(path))
            keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime", "st_ctime")
            attrs = {k: getattr(st, k) for k in keys}
            for k in ("st_atime", "st_mtime", "st_ctime"):
                attrs[k] = getattr(st, k + "_ns")
            return attrs

        def access(self, path: str, amode: int) -> int:
            if not os.access(self._real(path), amode):
                raise OSError(errno.EACCES, "access")
            return 0

        def chmod(self, path: str, mode: int) -> int:
            os.chmod(self._real(path), mode)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            os.chown(self._real(path), uid, gid)
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            os.utime(self._real(path), ns=times)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            sv = os.statvfs(self._real(path))
            keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_frsize")
            return {k: getattr(sv, k) for k in keys} | {"f_namemax": sv.f_namemax}

        # -- directories
        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(self._real(path))]

        def mkdir(self, path: str, mode: int) -> int:
            real = self._real(path)
            os.mkdir(real, mode)
            self._node(real, _Dir)
            return 0

        def rmdir(self, path: str) -> int:
            real = self._real(path)
            ino = os.lstat(real).st_ino
            os.rmdir(real)
            self.nodes.pop(ino, None)
            return 0

        def unlink(self, path: str) -> int:
            real = self._real(path)
            ino = os.lstat(real).st_ino
            os.unlink(real)
            self.nodes.pop(ino, None)
            return 0

        def rename(self, old: str, new: str) -> int:
            self._forget(self._real(new))
            os.rename(self._real(old), self._real(new))
            return 0

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            real = self._real(path)
            node = self._node(real, _Dir)
            assert isinstance(node, _Dir)
            node.entries = {name: self._node(os.path.join(real, name)) for name in os.listdir(real)}
            self.counts[f"fsyncdir:{path}"] += 1
            return 0

        # -- files
        def _open(self, path: str, flags: int, mode: int | None) -> tuple[int, _File]:
            real = self._real(path)
            synced = bool(flags & (os.O_DSYNC | os.O_SYNC))
            # The backing descriptor reads too (a sync reads what was written back), and
            # writes at the offsets the kernel computed (it resolves O_APPEND itself).
            backing_flags = flags & ~(os.O_DSYNC | os.O_SYNC | os.O_APPEND | os.O_ACCMODE | getattr(os, "O_DIRECT", 0))
            backing_flags |= os.O_RDWR if flags & os.O_ACCMODE != os.O_RDONLY else os.O_RDONLY
            existed = os.path.lexists(real)
            old_size = os.path.getsize(real) if existed else 0
            fd = os.open(real, backing_flags, mode) if mode is not None else os.open(real, backing_flags)
            if existed:
                node = self._node(real, _File)
                assert isinstance(node, _File)
            else:  # a new file, never synced: nothing of it is durable yet
                node = _File()
                self.nodes[os.fstat(fd).st_ino] = node
            if flags & os.O_TRUNC and old_size:
                node.dirty.append((0, old_size))
            self.handles[fd] = (node, synced)
            return fd, node

        def create(self, path: str, mode: int, fi: Any) -> int:
            fi.fh, _ = self._open(path, fi.flags | os.O_CREAT, mode)
            return 0

        def open(self, path: str, fi: Any) -> int:
            fi.fh, _ = self._open(path, fi.flags, None)
            return 0

        def read(self, path: str, size: int, offset: int, fi: Any) -> bytes:
            return os.pread(fi.fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fi: Any) -> int:
            n = os.pwrite(fi.fh, data, offset)
            node, synced = self.handles[fi.fh]
            node.dirty.append((offset, n))
            self.counts["write"] += 1
            if synced:
                self._sync(node, fi.fh)
                self.counts[f"dsync-write:{path}"] += 1
            return n

        def truncate(self, path: str, length: int, fi: Any = None) -> int:
            real = self._real(path)
            size = os.path.getsize(real)
            if fi is not None:
                os.ftruncate(fi.fh, length)
            else:
                os.truncate(real, length)
            node = self._node(real, _File)
            assert isinstance(node, _File)
            low, high = min(size, length), max(size, length)
            if high > low:
                node.dirty.append((low, high - low))
            return 0

        def fsync(self, path: str, datasync: int, fi: Any) -> int:
            node, _ = self.handles[fi.fh]
            self._sync(node, fi.fh)
            self.counts[f"{'fdatasync' if datasync else 'fsync'}:{path}"] += 1
            return 0

        def flush(self, path: str, fi: Any) -> int:
            return 0

        def release(self, path: str, fi: Any) -> int:
            self.handles.pop(fi.fh, None)
            os.close(fi.fh)
            return 0

        def link(self, target: str, source: str) -> int:
            raise OSError(errno.EPERM, "hard links are not modelled")

        def symlink(self, target: str, source: str) -> int:
            raise OSError(errno.EPERM, "symbolic links are not modelled")

        # -- control
        def image(self, dest: str) -> dict[str, int]:
            """Write what a power cut now would leave into the new directory ``dest``."""
            with self.mutex:
                tree = _freeze(self.root_node)
            counts = Counter[str]()
            os.makedirs(dest)
            _write_tree(tree, dest, counts)
            return dict(counts)

    return DurableLayer(backing)


def _freeze(node: _Dir) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, child in node.entries.items():
        out[name] = _freeze(child) if isinstance(child, _Dir) else bytes(child.durable)
    return out


def _write_tree(tree: dict[str, Any], dest: str, counts: Counter[str]) -> None:
    for name, value in tree.items():
        path = os.path.join(dest, name)
        if isinstance(value, dict):
            os.mkdir(path, 0o700)
            counts["dirs"] += 1
            _write_tree(value, path, counts)
        else:
            with open(path, "wb") as f:
                f.write(value)
            os.chmod(path, 0o600)
            counts["files"] += 1
            counts["bytes"] += len(value)


def _umount(mount: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(mount.encode(), 2)  # MNT_DETACH: the FUSE loop then ends


def _serve(backing: str, mount: str) -> None:
    from fuse import FUSE

    layer = _make_layer(backing)

    def control() -> None:
        layer.ready.wait()
        print("READY", flush=True)
        for line in sys.stdin:
            cmd, _, arg = line.strip().partition(" ")
            try:
                if cmd == "image":
                    reply: Any = layer.image(arg)
                elif cmd == "stats":
                    with layer.mutex:
                        reply = dict(layer.counts)
                else:
                    reply = {"error": f"unknown command {cmd!r}"}
            except Exception as exc:  # reported to the test, which fails on it
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), flush=True)
        _umount(mount)

    threading.Thread(target=control, daemon=True).start()
    # no_remote_lock: the kernel keeps POSIX record locks and flock itself (LMDB and
    # writer.lock need both), as with any local file system; the layer models no locks.
    FUSE(layer, mount, foreground=True, nothreads=True, raw_fi=True, fsname="durablelayer", no_remote_lock=True)


# -- the test side ----------------------------------------------------------------


class FuseLayer:
    """Mount a :class:`DurableLayer` over ``backing`` at ``mount`` in a child process.

    ``with FuseLayer(backing, mount) as layer:`` ... ``layer.image(dest)``.
    Raises :class:`FuseUnavailable` when the mount itself is refused.
    """

    def __init__(self, backing: str | os.PathLike[str], mount: str | os.PathLike[str], timeout_s: float = 30) -> None:
        self.backing = os.fspath(backing)
        self.mount = os.fspath(mount)
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: Any = None  # a file, not a pipe: a full pipe would stall the layer and its clients

    def __enter__(self) -> FuseLayer:
        reason = fuse_unavailable_reason()
        if reason:
            raise FuseUnavailable(reason)
        os.makedirs(self.backing, exist_ok=True)
        os.makedirs(self.mount, exist_ok=True)
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.fuselayer", self.backing, self.mount],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        line = self._readline()
        if line != "READY":
            err = self._stop()
            if "mount" in err.lower() or "permission" in err.lower() or "fuse" in err.lower():
                raise FuseUnavailable(f"mounting the FUSE layer failed: {err.strip()[-500:]}")
            raise RuntimeError(f"FUSE layer did not start: {line!r} {err[-2000:]}")
        return self

    def _readline(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout_s)
        if not ready:
            return "<timeout>"
        return self.proc.stdout.readline().strip()

    def _command(self, line: str) -> Any:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self._readline())
        if isinstance(reply, dict) and "error" in reply:
            raise RuntimeError(f"FUSE layer: {line}: {reply['error']}")
        return reply

    def image(self, dest: str | os.PathLike[str]) -> dict[str, int]:
        """Write the crash image (only fsynced data and entries) into the new directory ``dest``."""
        return dict(self._command(f"image {os.fspath(dest)}"))

    def stats(self) -> dict[str, int]:
        """Counts of requests: ``fsyncdir:/path``, ``fdatasync:/path``, ``fsync:/path``, ``write``."""
        return dict(self._command("stats"))

    def _stop(self) -> str:
        if self.proc is None:
            return ""
        proc, self.proc = self.proc, None
        try:
            proc.communicate(timeout=10)  # closes stdin: the layer unmounts and exits
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        if os.path.ismount(self.mount):
            subprocess.run(["umount", "-l", self.mount], check=False, capture_output=True)
        return self.errors()

    def errors(self) -> str:
        """What the layer printed on stderr so far (fusepy logs failed requests there)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return str(self._stderr.read())

    def close(self) -> None:
        self._stop()

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
