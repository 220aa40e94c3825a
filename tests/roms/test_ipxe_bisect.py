"""Bisection over a stand-in iPXE checkout: the first bad commit, each verdict, the user's repo intact."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from roms import build_cli
from roms.ipxe_bisect import BisectError, StepContext, bisect, shell_verdict
from tests.roms.fake_ipxe import commit_all, driver_text, git, make_repo

QUIET = lambda text: None  # noqa: E731 - progress sink
REALTEK = Path("src/drivers/net/realtek.c")
FIX = "/* the fix */\n"


def _history(repo: Path, broken_at: int, total: int, unbuildable: tuple[int, ...] = ()) -> list[str]:
    """Commits after the import: 0 applies the fix, ``broken_at`` reverts it, others change README.

    A commit listed in ``unbuildable`` breaks the intel driver (make fails) and the next one repairs it.
    """
    commits = []
    for number in range(total):
        if number == 0:
            (repo / REALTEK).write_text(driver_text(["10ec:8139"], FIX))
        elif number == broken_at:
            (repo / REALTEK).write_text(driver_text(["10ec:8139"]))
        else:
            with (repo / "README").open("a") as readme:
                readme.write(f"change {number}\n")
        intel = repo / "src" / "drivers" / "net" / "intel.c"
        extra = "#error half-done\n" if number in unbuildable else ""
        intel.write_text(driver_text(["8086:100e", "8086:100f", "8086:10d3"], extra))
        commits.append(commit_all(repo, f"commit {number}"))
    return commits


def has_fix(ctx: StepContext) -> int:
    assert (ctx.rom_dir / "manifest.json").is_file()  # the step's ROM set is there for a boot
    return 0 if FIX in (ctx.tree / REALTEK).read_text() else 1


def _state(repo: Path) -> dict[str, str]:
    return {
        "head": git(repo, "rev-parse", "HEAD"),
        "status": git(repo, "status", "--porcelain", "--ignored"),
        "worktrees": git(repo, "worktree", "list", "--porcelain"),
        "refs": git(repo, "for-each-ref"),
    }


def test_three_commits_name_the_revert_and_leave_the_user_s_repo_alone(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    fix, unrelated, revert = _history(repo, broken_at=2, total=3)
    before = _state(repo)
    result = bisect(repo, fix, revert, has_fix, nics=("e1000",), cache=tmp_path / "cache", progress=QUIET)
    assert result.first_bad == revert and result.first_bad_subject == "commit 2"
    assert [(s.commit, s.verdict) for s in result.steps] == [(unrelated, "good")]
    assert _state(repo) == before
    bisecting = subprocess.run(["git", "-C", str(repo), "bisect", "log"], capture_output=True, text=True)
    assert bisecting.returncode != 0  # the user's checkout is not bisecting
    assert list((tmp_path / "cache" / "builds").iterdir()) == []  # step copies removed
    assert result.session is not None and (result.session / "result.json").is_file()
    assert (result.steps[0].step_dir / "roms" / "8086100e.rom").is_file()  # each step's ROMs kept


def test_a_longer_history_takes_logarithmic_steps_each_with_the_right_verdict(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    commits = _history(repo, broken_at=9, total=16)
    result = bisect(repo, commits[0], commits[-1], has_fix, cache=tmp_path / "cache", progress=QUIET)
    assert result.first_bad == commits[9]
    assert 3 <= len(result.steps) <= 4
    for step in result.steps:
        assert step.verdict == ("bad" if commits.index(step.commit) >= 9 else "good")


def test_a_commit_that_does_not_build_is_skipped_and_git_names_the_candidates(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    fix, _, unbuildable, revert = _history(repo, broken_at=3, total=4, unbuildable=(2,))
    judged = []

    def verdict(ctx: StepContext) -> int:
        judged.append(ctx.commit)
        return has_fix(ctx)

    result = bisect(repo, fix, revert, verdict, cache=tmp_path / "cache", progress=QUIET)
    skipped = [s for s in result.steps if s.verdict == "skip"]
    assert [s.commit for s in skipped] == [unbuildable] and "does not build" in skipped[0].detail
    assert unbuildable not in judged
    assert (skipped[0].step_dir / "build-error.txt").read_text().startswith("make failed")
    assert result.first_bad is None and sorted(result.candidates) == sorted([unbuildable, revert])


def test_a_shell_verdict_sees_the_step_and_an_abort_status_stops_the_bisection(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    fix, _, revert = _history(repo, broken_at=2, total=3)
    check = (
        'echo "$LAB_BISECT_COMMIT" > "$LAB_BISECT_STEP_DIR/commit"'
        ' && test -f "$LAB_BISECT_ROM_DIR/8086100e.rom"'
        f' && grep -q "the fix" {REALTEK}'
    )
    result = bisect(repo, fix, revert, shell_verdict(check), cache=tmp_path / "cache", progress=QUIET)
    assert result.first_bad == revert
    step = result.steps[0]
    assert (step.step_dir / "commit").read_text().strip() == step.commit
    with pytest.raises(BisectError, match="exited 130"):
        bisect(repo, fix, revert, shell_verdict("exit 130"), cache=tmp_path / "cache", progress=QUIET)
    assert git(repo, "worktree", "list").count("\n") == 0  # the bisect worktree is gone after an abort too


def test_cli_bisect_prints_each_step_and_the_first_bad_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    fix, unrelated, revert = _history(repo, broken_at=2, total=3)
    argv = ["roms", "bisect", str(repo), "--good", fix, "--bad", revert, "--cache", str(tmp_path / "cache")]
    assert build_cli.main([*argv, "--run", f"grep -q 'the fix' {REALTEK}"]) == 0
    out = capsys.readouterr().out
    assert f"step 1: {unrelated[:12]} good" in out
    assert f"first bad commit: {revert} commit 2" in out
    assert build_cli.main(["roms", "bisect", str(repo), "--good", fix, "--bad", fix, "--run", "true"]) == 1
    assert "the same commit" in capsys.readouterr().err
