"""cloudinitd/plan/bundles.py: the files a step copies to its machine (pure but for reading
the folder; in-process; in the mutation test selection)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloudinitd.plan.bundles import (
    MAX_BUNDLE_BYTES,
    MAX_BUNDLE_FILES,
    BundleError,
    check_bundle,
    walk_bundle,
)


def _walk(entry: Path) -> list[tuple[str, str, bool]]:
    return [(str(p.relative_to(entry.parent)), rel, is_dir) for p, rel, is_dir in
            walk_bundle(entry)]


def test_a_folder_ships_parents_first_in_name_order(tmp_path):
    site = tmp_path / "site"
    (site / "b").mkdir(parents=True)
    (site / "a").mkdir()
    (site / "z.txt").write_text("z")
    (site / "m.txt").write_text("m")
    (site / "b" / "x.txt").write_text("x")
    (site / "link.txt").symlink_to(site / "m.txt")
    (site / "alias").symlink_to(site / "b")
    (site / "b" / "deep").mkdir()
    assert _walk(site) == [
        ("site", "site", True),
        ("site/a", "site/a", True), ("site/b", "site/b", True),
        ("site/link.txt", "site/link.txt", False), ("site/m.txt", "site/m.txt", False),
        ("site/z.txt", "site/z.txt", False),
        ("site/b/deep", "site/b/deep", True), ("site/b/x.txt", "site/b/x.txt", False),
    ]


def test_a_file_ships_itself(tmp_path):
    (tmp_path / "f.txt").write_text("f")
    assert _walk(tmp_path / "f.txt") == [("f.txt", "f.txt", False)]


@pytest.mark.parametrize(("build", "message"), [
    (lambda site, out: (site / "leak").symlink_to(out), "symlink site/leak points outside the bundle"),
    (lambda site, out: (site / "d").mkdir() or (site / "d" / "leak").symlink_to(out / "f"),
     "symlink site/d/leak points outside the bundle"),
    (lambda site, out: (site / "d").mkdir() or (site / "d" / "away").symlink_to(out),
     "symlink site/d/away points outside the bundle"),
    (lambda site, out: os.mkfifo(site / "pipe"), "site/pipe is not a regular file"),
    (lambda site, out: (site / "gone").symlink_to(site / "nothing"),
     "site/gone is not a regular file"),
])
def test_what_a_bundle_may_not_hold(tmp_path, build, message):
    site, out = tmp_path / "site", tmp_path / "out"
    site.mkdir()
    out.mkdir()
    (out / "f").write_text("secret")
    build(site, out)
    with pytest.raises(BundleError) as info:
        list(walk_bundle(site))
    assert str(info.value) == message


def test_a_sibling_folder_with_the_same_prefix_is_outside(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (tmp_path / "site2").mkdir()
    (tmp_path / "site2" / "f").write_text("x")
    (site / "leak").symlink_to(tmp_path / "site2" / "f")
    with pytest.raises(BundleError, match="^symlink site/leak points outside the bundle$"):
        check_bundle(site, tmp_path)


def test_check_bundle_refuses_an_entry_linking_out_of_the_plan_folder(tmp_path):
    plan_dir, elsewhere = tmp_path / "plan", tmp_path / "else"
    plan_dir.mkdir()
    elsewhere.mkdir()
    (elsewhere / "f").write_text("x")
    (plan_dir / "in.txt").write_text("x")
    (plan_dir / "out").symlink_to(elsewhere / "f")
    (plan_dir / "ok").symlink_to(plan_dir / "in.txt")
    with pytest.raises(BundleError) as info:
        check_bundle(plan_dir / "out", plan_dir)
    assert str(info.value) == "out is a symlink pointing outside the plan folder"
    check_bundle(plan_dir / "ok", plan_dir)
    check_bundle(plan_dir / "in.txt", plan_dir)
    with pytest.raises(BundleError, match="is not a file or folder"):
        check_bundle(plan_dir / "missing", plan_dir)


def test_size_and_count_limits(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "sparse", "wb") as f:  # sparse: no disk used
        f.truncate(MAX_BUNDLE_BYTES)
    check_bundle(big, tmp_path)  # exactly at the limit
    with open(big / "one-more", "wb") as f:
        f.write(b"x")
    with pytest.raises(BundleError) as info:
        check_bundle(big, tmp_path)
    assert str(info.value) == "more than 64 MiB"
    many = tmp_path / "many"
    many.mkdir()
    for i in range(MAX_BUNDLE_FILES - 1):
        (many / f"{i}").write_bytes(b"")
    check_bundle(many, tmp_path)  # the folder and its files: exactly the limit
    (many / "last").write_bytes(b"")
    with pytest.raises(BundleError) as info:
        check_bundle(many, tmp_path)
    assert str(info.value) == f"more than {MAX_BUNDLE_FILES} files"


def test_a_plan_at_the_root_of_the_file_system_holds_everything(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "f")
    check_bundle(tmp_path / "link", Path("/"))
