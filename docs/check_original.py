"""Run the original library's own tests and two of its scripts against reachlab's ``agent.compat``.

Usage, from a reachlab checkout with reachlab installed (``./lab test`` makes .venv)::

    .venv/bin/python docs/check_original.py /path/to/m-col/reach [--skip-mock]

The path is a checkout of https://github.com/m-col/reach (a work tree, or a bare
git directory: its HEAD is read). Into a temporary folder outside both
projects it copies the original's ``tests/`` and its
``scripts/merge_last_two_sessions.py`` and ``scripts/run_mock.py`` (and its
``reach`` package, which only the side-by-side run imports), changes only the
import lines of the tests and scripts (``reach`` -> ``agent.compat``; ``import reach.x`` ->
``import agent.compat as reach``) and ``run_mock.py``'s hard-coded data
folder, prints every line it changed, and then:

1. runs the original's tests with pytest, leaving out ``test_get_d_prime``
   (its expected value is one the original's own code no longer gives);
2. runs ``merge_last_two_sessions.py`` on a copy of the original's test mouse,
   merging its last two sessions, and checks the file it saved;
3. runs two scripted sessions (a backend of its own, on fake time) under the
   original's ``Session.run`` (the original's own code, from the checkout) and
   under agent.compat's, and compares them: outcomes, targets, cue durations,
   spout moves, resets, spontaneous reaches, hook calls;
4. runs ``run_mock.py`` (a 30 s session on the mock backend, in real time)
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
from typing import Any

IMPORT = re.compile(r"^(\s*)import reach(\.[\w.]+)?\s*$")
FROM = re.compile(r"^(\s*)from reach((?:\.\w+)*) import ")
DATA_DIR = re.compile(r"^data_dir = .*$")
WANTED = ("tests", "scripts/merge_last_two_sessions.py", "scripts/run_mock.py", "reach")

#: A session on a scripted rig (a paw lift every 7.3 s and a touch every 23.1 s outside
#: trials; each cue answered after 0.5 s by the plan's Correct, Incorrect or Miss; the
#: hook swaps the target every fifth trial) on fake time: run by the original's
#: ``Session.run`` and by agent.compat's, the counts are compared.
SIDE_BY_SIDE = r"""
import json
import sys
import time

if sys.argv[1] == "original":
    sys.path.insert(0, sys.argv[2])
    from reach.backends import Backend
    from reach.session import Session
else:
    from agent.compat.backends import Backend
    from agent.compat.session import Session


class Fake:
    def __init__(self):
        self.t = self.start = 1_700_000_000.0
        self.at = []  # (time, unique key, action)

    def time(self):
        return self.t

    def sleep(self, seconds):
        end = self.t + seconds
        while due := sorted(a for a in self.at if a[0] <= end):
            self.at.remove(due[0])
            self.t = max(self.t, due[0][0])
            due[0][2]()
        self.t = end


fake = Fake()
time.time, time.sleep = fake.time, fake.sleep
PLAN, DURATION = sys.argv[3], float(sys.argv[4])


class Rig(Backend):
    def __init__(self):
        super().__init__()
        self.in_trial, self.n, self.calls, self.moves = False, 0, {}, []

    def count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def message(self, text):
        pass

    def lift(self):
        if not self.in_trial:
            self.s.on_iti_lift(1)

    def touch(self):
        if not self.in_trial:
            self.s.on_iti_grasp(0)

    def configure_callbacks(self, session):
        self.s = session
        for k in range(1, 400):
            fake.at.append((fake.start + 7.3 * k, k, self.lift))
            fake.at.append((fake.start + 23.1 * k, -k, self.touch))

    def start_trial(self, spout):
        self.count("start_trial")
        self.in_trial = True
        what = PLAN[self.n % len(PLAN)]
        self.n += 1

        def act():
            if self.in_trial:
                self.s.on_trial_lift(0)
                if what == "C":
                    self.s.on_trial_correct()
                elif what == "I":
                    self.s.on_trial_incorrect()

        fake.at.append((fake.t + 0.5004, 10**6 + self.n, act))

    def position_spouts(self, position, spout_number=None):
        self.moves.append((self.n, list(position)))

    def end_trial(self):
        self.count("end_trial")
        self.in_trial = False

    def miss_trial(self):
        self.count("miss_trial")

    def give_reward(self, spout):
        self.count("give_reward")

    def cleanup(self):
        self.count("cleanup")


session = Session()
hooks = [0]


def hook():
    hooks[0] += 1
    if hooks[0] % 5 == 0:
        session.set_spout(-1)


rig = Rig()
session.run(rig, duration=DURATION, intertrial_interval=(3000, 3000), timeout=8000, hook=hook,
            initial_spout=0)
data = session.data
trials = [t for t in data["trials"] if "outcome" in t]
print(json.dumps({
    "trials": len(trials),
    "outcomes": "".join(str(t["outcome"]) for t in trials),
    "spouts": "".join(str(t["spout"]) for t in trials),
    "resets": len(data["resets"]),
    "spont": len(data["spontaneous_reaches"]),
    "hooks": hooks[0],
    "lifts": sum("lift_time" in t for t in trials),
    "calls": rig.calls,
    "starts": [round(t["start"] - data["start_time"], 2) for t in trials][:6],
    "moves": rig.moves,
    "cues": [t["cue_duration"] for t in trials],
    "last_start": round(trials[-1]["start"] - data["start_time"], 2),
}))
"""


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


def run(
    cmd: list[str], cwd: Path, stdin: str = "", show: bool = True
) -> subprocess.CompletedProcess[str]:
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=300)
    print((done.stdout if show else "") + done.stderr, flush=True)
    return done


def check(what: str, ok: bool, failures: list[str]) -> None:
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def same_session(original: dict[str, Any], compat: dict[str, Any]) -> str:
    """ "same" when reachlab's session matches the original's, else what differs.

    The original may run one trial more at the end: it checks the duration only
    after a trial, reachlab also after a broken ITI's timeout.
    """
    if not original or not compat:
        return "a run failed"
    extra = original["trials"] - compat["trials"]
    if extra not in (0, 1):
        return f"{original['trials']} trials against {compat['trials']}"
    for key in ("outcomes", "spouts", "cues"):
        if original[key][: compat["trials"]] != compat[key]:
            return f"the trials' {key} differ"
    for key in ("resets", "spont", "hooks"):
        if original[key] != compat[key]:
            return f"{key}: {original[key]} against {compat[key]}"
    moves = [m for m in original["moves"] if m[0] <= compat["trials"]]
    if moves != compat["moves"]:
        return "the spouts moved at other trials"
    return "same"


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

        (work / "side_by_side.py").write_text(SIDE_BY_SIDE)
        for plan, duration in (("CCMCICCCMCCICCCCCMCCCCCCIC", "600"), ("C", "3000")):
            runs = {}
            for which in ("original", "compat"):
                done = run(
                    [sys.executable, "side_by_side.py", which, str(work), plan, duration],
                    work,
                    show=False,
                )
                runs[which] = json.loads(done.stdout) if done.returncode == 0 else {}
                got = runs[which]
                if got:
                    print(
                        f"  {which}: {got['trials']} trials, backend calls {got['calls']}, "
                        f"{got['resets']} resets, {got['spont']} spontaneous reaches, "
                        f"{len(got['moves'])} spout moves, last cue {got['cues'][-1]} ms"
                    )
            check(
                f"plan {plan!r}, {duration} s: {same_session(**runs)}",
                same_session(**runs) == "same",
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
