"""Benchmark of ``labctl export --format nwb``: a 200-session x 300-trial mouse, against its JSON.

One run stores the mouse (through ``labctl import``'s code path, sessions shaped
like the agent's, as ``bench_export.py`` makes them), then times, on the same
database: writing the mouse's canonical JSON file (``labctl export``), and
writing its sessions as NWB files (``labctl export --format nwb``: one HDF5
file per session with its trials, events and settings). It prints both and their
ratio, and checks one NWB file's trials against its session.

Run: ``python bench/bench_nwb.py [--sessions 200] [--trials 300] [--db URL]``
(needs the nwb extra).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_export import MOUSE, make_sessions  # noqa: E402  # bench/ is the script's folder

from controller.db import open_database  # noqa: E402
from controller.files import export_mice, import_sessions  # noqa: E402
from controller.lab import get_mouse  # noqa: E402
from controller.nwb.subject import apply, checked  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--db", help="database URL (default: a temp SQLite file)")
    args = parser.parse_args()
    try:
        import pynwb  # noqa: F401  # imported here so its import time is not the export's

        from controller.nwb.export import export_nwb
    except ImportError as exc:
        print(f"bench_nwb: {exc}: install the nwb extra (pip install 'reachlab[nwb]')")
        return 2

    with tempfile.TemporaryDirectory(prefix="bench-nwb-") as tmp:
        folder = Path(tmp)
        db = open_database(args.db or f"sqlite:///{folder / 'lab.db'}")
        sessions = make_sessions(args.sessions, args.trials)
        with db.engine.begin() as conn:
            import_sessions(conn, MOUSE, sessions)
        with db.session() as tx:
            subject = {"species": "Mus musculus", "sex": "F", "date_of_birth": "2023-01-02"}
            apply(get_mouse(tx, MOUSE), checked(subject))
        print(f"stored {args.sessions} sessions x {args.trials} trials of {MOUSE} ({db.url})")

        started, cpu = time.perf_counter(), time.process_time()
        (written,) = export_mice(db, [MOUSE], folder / "json")
        json_s, json_cpu = time.perf_counter() - started, time.process_time() - cpu
        assert written.written and written.sessions == args.sessions
        json_bytes = written.path.stat().st_size

        started, cpu = time.perf_counter(), time.process_time()
        results = export_nwb(db, [MOUSE], folder / "nwb")
        nwb_s, nwb_cpu = time.perf_counter() - started, time.process_time() - cpu
        files = [r.path for r in results if r.written and r.path is not None]
        assert len(files) == args.sessions, [r.note for r in results if not r.written]
        nwb_bytes = sum(p.stat().st_size for p in files)

        from pynwb import NWBHDF5IO

        with NWBHDF5IO(str(files[0]), mode="r") as io:
            trials = io.read().trials.to_dataframe()
        first = sessions[0]
        same = len(trials) == len(first["trials"]) and all(
            abs(row - (t["start"] - first["start_time"])) < 1e-6
            for row, t in zip(trials["start_time"], first["trials"], strict=True)
        )
        db.close()

    # CPU time beside wall time: on a shared machine the wall time includes waiting for a core.
    print(
        f"JSON export, 1 file       : {json_s:8.2f} s wall, {json_cpu:8.2f} s CPU "
        f"({json_bytes / 1e6:.1f} MB)"
    )
    print(
        f"NWB export, {len(files)} files : {nwb_s:8.2f} s wall, {nwb_cpu:8.2f} s CPU "
        f"({nwb_bytes / 1e6:.1f} MB; {nwb_s / len(files) * 1000:.0f} ms wall a session)"
    )
    print(f"ratio NWB / JSON          : {nwb_s / json_s:8.1f}x wall, {nwb_cpu / json_cpu:.1f}x CPU")
    print(f"first file's trials equal its session's: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
