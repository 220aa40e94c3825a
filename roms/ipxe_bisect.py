"""Find the commit that broke something: git's bisection over an iPXE tree, one ROM build per step.

The bisection runs in a linked worktree of its own under the cache (``git worktree
add --no-checkout``), so the user's checkout and its bisect state are never touched;
the worktree is removed at the end.  git bisect keeps its state per worktree.  Each
step builds the candidate commit with roms.ipxe_build (seeded from the previous step,
so make compiles only what changed) and asks the verdict: exit 0 good, 1 bad, 125
skip, as for ``git bisect run``.  A commit that does not build is skipped.

Why not ``git bisect run`` itself: the loop here is the same (``git bisect good``,
``bad`` or ``skip`` after each step) but it can call a Python verdict in-process, and it
keeps each step's verdict, timing and ROM folder for the report.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from roms.ipxe_build import (
    BuildError,
    BuildRequest,
    Patch,
    Progress,
    build_romset,
    copy_for,
    remove_copy,
    stderr_progress,
)
from roms.ipxe_tree import TreeError, TreeSource, cache_root, open_source, resolve_commit

GOOD, BAD, SKIP = 0, 1, 125


class BisectError(Exception):
    """The bisection could not run or was aborted (the message says why and what to do)."""


@dataclass(frozen=True)
class StepContext:
    """What a verdict gets for one step (a shell verdict gets it as LAB_BISECT_* variables)."""

    commit: str
    describe: str
    rom_dir: Path  # the step's ROM set (manifest.json inside)
    tree: Path  # the build copy's tree (the commit's files, patches applied)
    step_dir: Path  # where the verdict may leave evidence


Verdict = Callable[[StepContext], int]


@dataclass
class BisectStep:
    commit: str
    subject: str
    verdict: str  # good, bad, skip
    detail: str
    build_seconds: float
    verdict_seconds: float
    step_dir: Path


@dataclass
class BisectResult:
    first_bad: str | None
    first_bad_subject: str | None
    steps: list[BisectStep] = field(default_factory=list)
    seconds: float = 0.0
    #: When skipped commits hide the answer: every commit that could be the first bad one.
    candidates: list[str] = field(default_factory=list)
    log: str = ""
    session: Path | None = None

    def conclusion(self) -> str:
        """The answer as both bisect commands print it: the first bad commit, or its candidates."""
        if self.first_bad:
            return f"first bad commit: {self.first_bad} {self.first_bad_subject}"
        return "skipped commits hide the first bad one; it is one of: " + " ".join(self.candidates)

    def to_json(self) -> dict[str, object]:
        return {
            "first_bad": self.first_bad,
            "first_bad_subject": self.first_bad_subject,
            "candidates": self.candidates,
            "seconds": round(self.seconds, 1),
            "steps": [
                {
                    "commit": s.commit,
                    "subject": s.subject,
                    "verdict": s.verdict,
                    "detail": s.detail,
                    "build_seconds": round(s.build_seconds, 1),
                    "verdict_seconds": round(s.verdict_seconds, 1),
                    "folder": str(s.step_dir),
                }
                for s in self.steps
            ],
        }


def shell_verdict(command: str, timeout: float | None = None) -> Verdict:
    """A verdict that runs ``command`` with sh in the build copy's tree; its exit status is the verdict."""

    def run(ctx: StepContext) -> int:
        env = dict(
            os.environ,
            LAB_BISECT_COMMIT=ctx.commit,
            LAB_BISECT_DESCRIBE=ctx.describe,
            LAB_BISECT_ROM_DIR=str(ctx.rom_dir),
            LAB_BISECT_TREE=str(ctx.tree),
            LAB_BISECT_STEP_DIR=str(ctx.step_dir),
        )
        with (ctx.step_dir / "verdict.log").open("w") as log:
            try:
                result = subprocess.run(
                    command,
                    shell=True,
                    cwd=ctx.tree,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                raise BisectError(f"verdict command timed out after {timeout} s at {ctx.commit}") from None
        return result.returncode

    return run


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C", GIT_TERMINAL_PROMPT="0")
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise BisectError(
            f"git {' '.join(args)} failed in {repo}: {(result.stderr or result.stdout).strip()}"
        )
    return result


def bisect(
    src: Path | str,
    good: str,
    bad: str,
    verdict: Verdict,
    *,
    options: Sequence[str] = (),
    patches: Sequence[Path | str] = (),
    nics: Sequence[str] = ("e1000",),
    cache: Path | None = None,
    progress: Progress | None = None,
    jobs: int | None = None,
    keep_copies: bool = False,
) -> BisectResult:
    """Bisect SRC between GOOD and BAD: the first bad commit (or the candidates left), each step, the time."""
    show = progress or stderr_progress("bisect")
    root = cache or cache_root()
    started = time.monotonic()
    try:
        source = open_source(src)
    except TreeError as exc:
        raise BisectError(str(exc)) from None
    if source.kind != "git":
        raise BisectError(f"{source.path} is an archive: bisecting needs a git checkout")
    repo = source.path
    good_sha, bad_sha = resolve_commit(repo, good), resolve_commit(repo, bad)
    if good_sha == bad_sha:
        raise BisectError(f"--good {good} and --bad {bad} are the same commit")
    patch_list = tuple(Patch.read(p) for p in patches)
    (root / "bisect").mkdir(parents=True, exist_ok=True)
    session = Path(
        tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%dT%H%M%S')}-{bad_sha[:12]}-", dir=root / "bisect")
    )
    worktree = session / "worktree"
    result = BisectResult(None, None, session=session)
    made: list[Path] = []
    _git(repo, "worktree", "add", "--detach", "--no-checkout", str(worktree), bad_sha)
    try:
        out = _git(worktree, "bisect", "start", "--no-checkout", bad_sha, good_sha, check=False)
        if out.returncode != 0:
            raise BisectError(f"git bisect start {bad} {good} refused: {(out.stderr or out.stdout).strip()}")
        show(
            f"bisecting {good_sha[:12]} (good) .. {bad_sha[:12]} (bad): {out.stdout.strip().splitlines()[-1]}"
        )
        text = out.stdout
        while not _finished(text, result):
            commit = _git(worktree, "rev-parse", "BISECT_HEAD").stdout.strip()
            step = _step(
                repo,
                commit,
                len(result.steps) + 1,
                session,
                verdict,
                patch_list,
                options,
                nics,
                root,
                show,
                jobs,
                made,
            )
            result.steps.append(step)
            show(f"step {len(result.steps)}: {commit[:12]} {step.subject!r}: {step.verdict} ({step.detail})")
            out = _git(worktree, "bisect", step.verdict, commit, check=False)
            if out.returncode != 0 and "first bad commit" not in out.stdout and "skip" not in out.stdout:
                raise BisectError(f"git bisect {step.verdict} failed: {(out.stderr or out.stdout).strip()}")
            text = out.stdout
        result.log = _git(worktree, "bisect", "log", check=False).stdout
    finally:
        _git(worktree, "bisect", "reset", check=False)
        _git(repo, "worktree", "remove", "--force", str(worktree), check=False)
        _git(repo, "worktree", "prune", check=False)
        if not keep_copies:
            for copy in made:
                remove_copy(copy)
                copy.with_name(copy.name + ".lock").unlink(missing_ok=True)
    result.seconds = time.monotonic() - started
    if result.first_bad:
        result.first_bad_subject = _subject(repo, result.first_bad)
    (session / "result.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    (session / "bisect.log").write_text(result.log)
    return result


def _finished(text: str, result: BisectResult) -> bool:
    """Read git bisect's answer: the first bad commit, or only skipped commits left."""
    match = re.search(r"^([0-9a-f]{40}) is the first bad commit", text, re.M)
    if match:
        result.first_bad = match.group(1)
        return True
    if "only 'skip'ped commits left" in text:
        result.candidates = re.findall(r"^([0-9a-f]{40})$", text, re.M)
        return True
    return False


def _subject(repo: Path, commit: str) -> str:
    return _git(repo, "log", "-1", "--format=%s", commit).stdout.strip()


def _step(
    repo: Path,
    commit: str,
    number: int,
    session: Path,
    verdict: Verdict,
    patches: tuple[Patch, ...],
    options: Sequence[str],
    nics: Sequence[str],
    cache: Path,
    show: Progress,
    jobs: int | None,
    made: list[Path],
) -> BisectStep:
    subject = _subject(repo, commit)
    step_dir = session / "steps" / f"{number:02d}-{commit[:12]}"
    step_dir.mkdir(parents=True)
    source: TreeSource = open_source(repo, commit)
    request = BuildRequest(source, patches, tuple(options), tuple(nics))
    planned = copy_for(request, cache)
    if not planned.prepared:
        made.append(planned.directory)  # this bisection's own copy: removed at the end
    started = time.monotonic()
    try:
        built = build_romset(request, step_dir / "roms", cache, show, jobs)
    except BuildError as exc:
        (step_dir / "build-error.txt").write_text(str(exc) + "\n")
        first = str(exc).splitlines()[0]
        return BisectStep(
            commit, subject, "skip", f"does not build: {first}", time.monotonic() - started, 0.0, step_dir
        )
    build_seconds = time.monotonic() - started
    ctx = StepContext(commit, source.describe, step_dir / "roms", built.copy / "ipxe", step_dir)
    started = time.monotonic()
    code = verdict(ctx)
    verdict_seconds = time.monotonic() - started
    if code == GOOD:
        word = "good"
    elif code == SKIP:
        word = "skip"
    elif 0 < code < 128:
        word = "bad"
    else:
        raise BisectError(
            f"the verdict exited {code} at {commit[:12]} (0 good, 1-127 bad, 125 skip): aborted"
        )
    return BisectStep(commit, subject, word, f"verdict exit {code}", build_seconds, verdict_seconds, step_dir)
