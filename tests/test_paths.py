"""tulu_cli.paths: output checks before work, staging names beside the output, cleanup of what killed runs left."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tulu_cli.errors import TuluError
from tulu_cli.paths import check_output, clean_stale, new_folders_undone, temp_path


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temp_path_is_hidden_beside_the_output(tmp_path):
    host = socket.gethostname()
    assert temp_path(tmp_path / "o.jsonl") == tmp_path / f".o.jsonl.tulu-tmp-{host}-{os.getpid()}"
    assert temp_path(tmp_path / "model", "old") == tmp_path / f".model.tulu-old-{host}-{os.getpid()}"


def test_clean_stale_removes_only_dead_processes_of_this_host(tmp_path):
    host = socket.gethostname()
    dead = _dead_pid()
    stale_file = tmp_path / f".o.jsonl.tulu-tmp-{host}-{dead}"
    stale_file.write_text("half a file")
    stale_dir = tmp_path / f".model.tulu-tmp-{host}-{dead}"
    (stale_dir / "sub").mkdir(parents=True)
    (stale_dir / "sub" / "model.safetensors").write_bytes(b"x" * 100)
    live = tmp_path / f".p.jsonl.tulu-tmp-{host}-{os.getppid()}"  # the parent process is alive
    live.write_text("in progress")
    other_host = tmp_path / f".q.jsonl.tulu-tmp-not-{host}-{dead}"  # another machine on a shared disk
    other_host.write_text("theirs")
    unrelated = tmp_path / f".r.jsonl.tmp{dead}"  # not a tulu staging name
    unrelated.write_text("someone else's")
    assert sorted(clean_stale(tmp_path)) == sorted([stale_file, stale_dir])
    assert live.exists() and other_host.exists() and unrelated.exists()
    assert clean_stale(tmp_path / "missing") == []


@pytest.mark.parametrize(
    "make,target,kind,expect",
    [
        (lambda t: (t / "f").write_text("x"), "f/out.jsonl", "file", "f/out.jsonl: {t}/f is a file, not a folder"),
        (lambda t: (t / "f").write_text("x"), "f/a/b/out.jsonl", "file", "f/a/b/out.jsonl: {t}/f is a file, not a folder"),
        (lambda t: (t / "f").write_text("x"), "f", "folder", "f: exists and is not a folder"),
        (lambda t: (t / "d").mkdir(), "d", "file", "d: is a folder; give a file name"),
        (lambda t: os.symlink(t / "nowhere", t / "link"), "link/out.jsonl", "file", "link/out.jsonl: {t}/link is a broken symbolic link"),
    ],
)
def test_check_output_refusals(tmp_path, make, target, kind, expect):
    make(tmp_path)
    with pytest.raises(TuluError) as e:
        check_output(tmp_path / target, "--output", kind)
    assert e.value.message == f"--output {tmp_path}/" + expect.format(t=tmp_path)


def test_check_output_accepts_new_and_existing_paths(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "o.jsonl").write_text("old")
    check_output(tmp_path / "new" / "deep" / "o.jsonl", "--output", "file")
    check_output(tmp_path / "o.jsonl", "--output", "file")
    check_output(tmp_path / "d", "--output", "folder")
    check_output(tmp_path / "d", "--output", "folder", in_place=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root passes every permission check (the unprivileged rows of test_bad_input_data_weights cover it)")
def test_check_output_unwritable_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with pytest.raises(TuluError, match="cannot write into"):
        check_output(ro / "o.jsonl", "--output", "file")


def test_new_folders_undone(tmp_path):
    with pytest.raises(RuntimeError):
        with new_folders_undone(tmp_path / "a" / "b"):
            (tmp_path / "a" / "b").mkdir(parents=True)
            raise RuntimeError("refused")
    assert list(tmp_path.iterdir()) == []
    with new_folders_undone(tmp_path / "a" / "b"):
        (tmp_path / "a" / "b").mkdir(parents=True)
    assert (tmp_path / "a" / "b").is_dir()
    with pytest.raises(RuntimeError):  # a folder that holds something is kept
        with new_folders_undone(tmp_path / "c"):
            (tmp_path / "c").mkdir()
            (tmp_path / "c" / "kept").write_text("x")
            raise RuntimeError("refused")
    assert (tmp_path / "c" / "kept").exists()


def test_every_cache_follows_one_rule(monkeypatch, tmp_path):
    from tulu_cli.paths import cache_root

    monkeypatch.delenv("TULU_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root("tokenized") == tmp_path / "home" / ".cache" / "tulu" / "tokenized"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root("preference") == tmp_path / "xdg" / "tulu" / "preference"
    monkeypatch.setenv("TULU_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine" and cache_root("openai") == tmp_path / "mine" / "openai"


def test_sha256_file_is_the_files_digest(tmp_path):
    from tulu_cli.paths import sha256_file

    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
