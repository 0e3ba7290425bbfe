"""Run the original library's own tests and two of its scripts against reachlab's ``agent.compat``.

Usage, from a reachlab checkout with reachlab installed (``./lab test`` makes .venv)::

    .venv/bin/python docs/check_original.py /path/to/m-col/reach [--skip-mock]

The path is a checkout of https://github.com/m-col/reach (a work tree, or a bare
git directory: its HEAD is read). Into a temporary folder outside both
projects it copies the original's ``tests/`` and its
``scripts/merge_last_two_sessions.py`` and ``scripts/run_mock.py``, changes
only their import lines (``reach`` -> ``agent.compat``; ``import reach.x`` ->
``import agent.compat as reach``) and ``run_mock.py``'s hard-coded data
folder, prints every line it changed, and then:

1. runs the original's tests with pytest, leaving out ``test_get_d_prime``
   (its expected value is one the original's own code no longer gives);
2. runs ``merge_last_two_sessions.py`` on a copy of the original's test mouse,
   merging its last two sessions, and checks the file it saved;
3. runs ``run_mock.py`` (a 30 s session on the mock backend, in real time)
   and checks the session it saved.

It exits 0 when all of that holds. Nothing of the original is copied into reachlab.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

IMPORT = re.compile(r"^(\s*)import reach(\.[\w.]+)?\s*$")
FROM = re.compile(r"^(\s*)from reach((?:\.\w+)*) import ")
DATA_DIR = re.compile(r"^data_dir = .*$")
WANTED = ("tests", "scripts/merge_last_two_sessions.py", "scripts/run_mock.py")


def fetch(source: Path, into: Path) -> None:
    """The original's tests and scripts from a work tree or a (bare) git directory."""
    if (source / "tests").is_dir():
        for name in WANTED:
            path = source / name
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, target)
            else:
                shutil.copy2(path, target)
        return
    archive = subprocess.run(
        ["git", "--git-dir", str(source), "archive", "--format=tar", "HEAD", *WANTED],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def rewrite(path: Path, data_dir: Path | None = None) -> list[str]:
    """Change the import lines (and a script's data folder); return the changes made."""
    changes = []
    lines = path.read_text().splitlines(keepends=True)
    for number, line in enumerate(lines):
        new = IMPORT.sub(r"\1import agent.compat as reach", line.rstrip("\n"))
        new = FROM.sub(r"\1from agent.compat\2 import ", new)
        if data_dir is not None:
            new = DATA_DIR.sub(f"data_dir = {str(data_dir)!r}", new)
        if new != line.rstrip("\n"):
            changes.append(f"{path.name}:{number + 1}: {line.strip()}  ->  {new.strip()}")
            lines[number] = new + "\n"
    path.write_text("".join(lines))
    return changes


def run(cmd: list[str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300)
    print(done.stdout + done.stderr, flush=True)
    return done


def check(what: str, ok: bool, failures: list[str]) -> None:
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("original", type=Path, help="a checkout (or bare git dir) of m-col/reach")
    parser.add_argument("--skip-mock", action="store_true", help="leave out the 30 s mock run")
    args = parser.parse_args()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="reach-original-") as tmp:
        work = Path(tmp)
        fetch(args.original.expanduser().resolve(), work)
        mock_data = work / "mock_data"
        mock_data.mkdir()
        changes = [c for f in sorted((work / "tests").glob("*.py")) for c in rewrite(f)]
        changes += rewrite(work / "scripts" / "merge_last_two_sessions.py")
        changes += rewrite(work / "scripts" / "run_mock.py", data_dir=mock_data)
        print("Lines changed in the original's files:")
        print("\n".join(f"  {c}" for c in changes), flush=True)

        tests = run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
             "--deselect", "tests/test_session.py::test_get_d_prime"],
            work,
        )  # fmt: skip
        check("the original's tests, but test_get_d_prime", tests.returncode == 0, failures)

        merge_dir = work / "merge_data"
        merge_dir.mkdir()
        shutil.copy2(work / "tests" / "mouse001.json", merge_dir / "mouse001.json")
        before = json.loads((merge_dir / "mouse001.json").read_text())
        merged = run(
            [sys.executable, "scripts/merge_last_two_sessions.py", "-m", "mouse001",
             "-1", str(len(before) - 2), "-2", str(len(before) - 1), "-d", str(merge_dir)],
            work,
            stdin="1\ny\n",
        )  # fmt: skip
        after = json.loads((merge_dir / "mouse001.json").read_text())
        want = len(before[-2]["trials"]) + len(before[-1]["trials"])
        check(
            f"merge_last_two_sessions.py saved {len(before)} -> {len(after)} sessions, "
            f"the last with {len(after[-1]['trials'])} trials (want {want}); backups "
            f"{sorted(p.name for p in merge_dir.glob('*.bak'))}",
            merged.returncode == 0
            and len(after) == len(before) - 1
            and len(after[-1]["trials"]) == want
            and after[:-1] == before[:-2]
            and len(list(merge_dir.glob("*.bak"))) == 1,
            failures,
        )

        if not args.skip_mock:
            mocked = run(
                [sys.executable, "scripts/run_mock.py"], work, stdin="\nchecked by reachlab\n"
            )
            saved = mock_data / "Mouse1.json"
            sessions = json.loads(saved.read_text()) if saved.exists() else []
            check(
                f"run_mock.py saved {len(sessions)} session(s) to {saved.name}, "
                f"{len(sessions[-1]['trials']) if sessions else 0} trials, notes "
                f"{sessions[-1].get('notes') if sessions else None!r}",
                mocked.returncode == 0
                and len(sessions) == 1
                and sessions[0]["notes"] == "checked by reachlab"
                and len(sessions[0]["trials"]) > 0,
                failures,
            )
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
