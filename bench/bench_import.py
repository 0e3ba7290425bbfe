"""Benchmark of ``labctl import``: a lab's folder of per-mouse files, time and peak memory.

Makes, in a temp dir, a folder of ``--files`` files of ``--mb`` MB in all (sessions shaped
like the agent's, 300 trials each) and one file of ``--big-mb`` MB, then imports them,
each in a fresh child process and a fresh database, two ways in the same run:

* ``whole``: the reading before issue 20.6, as a baseline: the file's text parsed whole
  into a list of dicts (``loads_sessions``), then stored (``import_sessions``);
* ``stream``: ``labctl import``'s code path now (``import_files``): each session parsed
  and stored in turn.

Printed: the folder's import time, and the big file's peak memory above the child's
resident memory just before, as a multiple of the file's size (goal: under 2x, the folder
at least as fast as ``whole``).

Run: ``python bench/bench_import.py [--files 51] [--mb 66] [--big-mb 32] [--db-server URL]``
(``--db-server``: a PostgreSQL server URL; each run makes and drops its own database).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_export import make_sessions  # noqa: E402
from measure import rss_mb  # noqa: E402


def write_file(path: Path, megabytes: float, seed: int) -> None:
    one = len(json.dumps(make_sessions(1, 300, seed))) + 2
    count = max(1, round(megabytes * 1e6 / one))
    sessions = make_sessions(count, 300, seed)
    for number, session in enumerate(sessions):  # each file's sessions are its mouse's own
        session["session_id"] = f"{path.stem}-{number}"
    path.write_text(json.dumps(sessions), encoding="utf-8")


def child(mode: str, target: str, url: str) -> None:
    """Import ``target`` (a folder or a file) one way; print seconds and peak extra MB."""
    from controller.db import open_database
    from controller.files import files_to_import, import_files, import_sessions, mouse_id_of
    from shared.sessionfile import loads_sessions

    db = open_database(url)
    files = files_to_import([target])
    before = rss_mb(os.getpid())
    # The high-water mark starts from here (a forked child inherits its parent's otherwise).
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    stored = 0
    if mode == "stream":
        stored = sum(r.imported for r in import_files(db, [target]))
    else:
        for path in files:
            sessions = loads_sessions(
                path.read_text(encoding="utf-8-sig"), str(path), refuse_duplicate_keys=True
            )
            with db.engine.begin() as conn:
                stored += import_sessions(conn, mouse_id_of(path), sessions, path=path).imported
            del sessions
    seconds = time.perf_counter() - started
    peak = _peak_mb()
    db.close()
    print(json.dumps({"seconds": seconds, "extra_mb": peak - before, "stored": stored}))


def _peak_mb() -> float:
    """This process's resident high-water mark (VmHWM) in MB."""
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) / 1024
    return 0.0


def run_child(mode: str, target: Path, server: str | None, tmp: Path) -> dict[str, Any]:
    if server is None:
        url, drop = f"sqlite:///{tmp / f'{mode}-{uuid.uuid4().hex[:6]}.db'}", None
    else:
        from sqlalchemy import create_engine, make_url, text

        name = f"bench_import_{uuid.uuid4().hex[:8]}"
        admin = create_engine(make_url(server), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        drop = (admin, name)
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, str(target), url],
            check=True, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        if drop is not None:
            admin, name = drop
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=51)
    parser.add_argument("--mb", type=float, default=66.0)
    parser.add_argument("--big-mb", type=float, default=32.0)
    parser.add_argument("--db-server", metavar="URL", help="a PostgreSQL server (default SQLite)")
    parser.add_argument(
        "--child", nargs=3, metavar=("MODE", "TARGET", "URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        folder, big = tmp / "lab", tmp / "big" / "Big1.json"
        folder.mkdir()
        big.parent.mkdir()
        for n in range(args.files):
            write_file(folder / f"M{n}.json", args.mb / args.files, seed=n)
        write_file(big, args.big_mb, seed=999)
        size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        big_mb = big.stat().st_size / 1e6
        engine = "PostgreSQL" if args.db_server else "SQLite"
        print(f"folder: {args.files} files, {size:.1f} MB; big file {big_mb:.1f} MB; {engine}")
        folder_s = {m: run_child(m, folder, args.db_server, tmp) for m in ("whole", "stream")}
        big_run = {m: run_child(m, big, args.db_server, tmp) for m in ("whole", "stream")}
    for mode in ("whole", "stream"):
        f, b = folder_s[mode], big_run[mode]
        print(f"{mode:>6}: folder {f['seconds']:.2f} s ({f['stored']} sessions); big file "
              f"peak +{b['extra_mb']:.0f} MB = {b['extra_mb'] / big_mb:.2f}x its size")  # fmt: skip
    ratio = folder_s["stream"]["seconds"] / folder_s["whole"]["seconds"]
    memory = big_run["stream"]["extra_mb"] / big_run["whole"]["extra_mb"]
    print(f"stream/whole: folder time {ratio:.2f}x, big file peak memory {memory:.2f}x")


if __name__ == "__main__":
    main()
