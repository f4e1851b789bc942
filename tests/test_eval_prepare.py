"""`tulu data prepare-eval` against a local mirror serving the data/eval layout; archives are unpacked."""

from __future__ import annotations

import shutil
import tarfile

from _eval_helpers import invoke
from _fileserver import serve
from tulu_cli.evaluation.prepare import files_for
from tulu_cli.evaluation.tasks import DataFile
from tulu_cli.evaluation.tasks.bbh import SUBTASKS
from tulu_cli.evaluation.tasks.gsm import GSM

# gsm/test.jsonl: the published file's sha256 (all 1,319 lines), and the shared 60-line sample's (SOURCES.md)
GSM_SHA256 = "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"
GSM_SAMPLE_SHA256 = "4a665a79d70d7d83f14400fdb75f421e201ce1ae8ec94fa87157e5a3feae75aa"


def _mirror(shared_data, root):
    """A mirror: gsm's 60-line sample, MMLU as data.tar (built from the samples), all 27 BBH tasks."""
    src = shared_data / "eval"
    (root / "gsm").mkdir(parents=True)
    shutil.copy(src / "gsm/test.jsonl", root / "gsm/test.jsonl")
    (root / "mmlu").mkdir()
    with tarfile.open(root / "mmlu/data.tar", "w") as t:
        t.add(src / "mmlu/data", arcname="data")
    for sub in ("bbh", "cot-prompts"):
        (root / "bbh" / sub).mkdir(parents=True)
    for name in SUBTASKS:  # four real tasks; the other 23 reuse their files (only the layout matters here)
        real = name if (src / f"bbh/bbh/{name}.json").exists() else "word_sorting"
        shutil.copy(src / f"bbh/bbh/{real}.json", root / f"bbh/bbh/{name}.json")
        shutil.copy(src / f"bbh/cot-prompts/{real}.txt", root / f"bbh/cot-prompts/{name}.txt")


def _declare_gsm_digest(monkeypatch, sha256):
    (published,) = GSM.data_files
    monkeypatch.setattr(GSM, "data_files", (DataFile(published.path, published.url, sha256=sha256),))


def test_prepare_from_mirror_then_run_finds_data(shared_data, tmp_path, tiny_model, monkeypatch):
    # This mirror serves gsm's sample, not the published file: it declares the sample's own digest, so the check is made.
    _declare_gsm_digest(monkeypatch, GSM_SAMPLE_SHA256)
    _mirror(shared_data, tmp_path / "mirror")
    data = tmp_path / "data"
    with serve(tmp_path / "mirror") as srv:
        res = invoke(["data", "prepare-eval", "mmlu", "gsm", "bbh", "--data-dir", str(data), "--mirror", srv.base])
        assert res.exit_code == 0, res.stderr
    assert (data / "gsm/test.jsonl").read_bytes() == (shared_data / "eval/gsm/test.jsonl").read_bytes()
    assert (data / "mmlu/data/test/abstract_algebra_test.csv").read_bytes() == (
        shared_data / "eval/mmlu/data/test/abstract_algebra_test.csv"
    ).read_bytes()
    assert not (data / "mmlu/data.tar").exists()
    assert len(list((data / "bbh/bbh").glob("*.json"))) == 27 and len(list((data / "bbh/cot-prompts").glob("*.txt"))) == 27
    # Already prepared: nothing is downloaded (the mirror is gone).
    res = invoke(["data", "prepare-eval", "gsm", "--data-dir", str(data), "--mirror", "http://127.0.0.1:9/none"])
    assert res.exit_code == 0 and "already in" in res.stderr
    res = invoke(["eval", "run", "-m", str(tiny_model), "-t", "gsm_direct", "-d", str(data), "-o", str(tmp_path / "o"),
                  "--limit", "1", "--max-new-tokens", "2"])
    assert res.exit_code == 0, res.stderr


def test_gsm_is_checked_against_the_published_digest(shared_data, tmp_path):
    assert GSM.data_files[0].sha256 == GSM_SHA256
    _mirror(shared_data, tmp_path / "mirror")
    with serve(tmp_path / "mirror") as srv:
        res = invoke(["data", "prepare-eval", "gsm", "--data-dir", str(tmp_path / "d"), "--mirror", srv.base])
    assert res.exit_code == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {srv.base}/gsm/test.jsonl: sha256 mismatch: expected {GSM_SHA256}, got {GSM_SAMPLE_SHA256} "
                      "(the bad file was deleted; the upstream file may have changed)"]
    assert not (tmp_path / "d").exists()  # no half-filled gsm/, no staging folder, not even the data dir it made


def test_prepare_missing_file_and_unknown_name(tmp_path, monkeypatch):
    (tmp_path / "mirror").mkdir()
    with serve(tmp_path / "mirror") as srv:
        monkeypatch.setenv("TULU_EVAL_MIRROR", srv.base)
        res = invoke(["data", "prepare-eval", "gsm", "--data-dir", str(tmp_path / "d")])
    assert res.exit_code == 2 and "gsm/test.jsonl: HTTP 404" in res.stderr
    res = invoke(["data", "prepare-eval", "gsmm", "--data-dir", str(tmp_path / "d")])
    assert res.exit_code == 2 and "unknown benchmark 'gsmm'" in res.stderr and "mmlu" in res.stderr
    res = invoke(["data", "prepare-eval"])
    assert res.exit_code == 2 and "name the benchmarks" in res.stderr


def test_bad_archive_is_reported(tmp_path):
    (tmp_path / "mirror/mmlu").mkdir(parents=True)
    (tmp_path / "mirror/mmlu/data.tar").write_bytes(b"this is not a tar file" * 50)
    with serve(tmp_path / "mirror") as srv:
        res = invoke(["data", "prepare-eval", "mmlu", "--data-dir", str(tmp_path / "d"), "--mirror", srv.base])
    assert res.exit_code == 2 and "data.tar: cannot unpack" in res.stderr
    assert not (tmp_path / "d").exists()  # neither a half-filled mmlu/ nor the staging nor the data dir it made


def test_declared_files_use_published_urls():
    urls = {f.path: f.url for f in files_for("gsm") + files_for("mmlu") + files_for("bbh")}
    assert urls["gsm/test.jsonl"].startswith("https://github.com/openai/grade-school-math/")
    assert urls["mmlu/data.tar"] == "https://people.eecs.berkeley.edu/~hendrycks/data.tar"
    assert len([p for p in urls if p.startswith("bbh/")]) == 54


def test_files_gather_in_staging_and_a_later_run_resumes(tmp_path):
    """What a killed run fetched stays in data/.NAME.tulu-partial/ (never in the benchmark folder); the next
    run downloads only the rest, then moves the finished benchmark into place and removes the staging."""
    data = tmp_path / "data"
    stage = data / ".truthfulqa.tulu-partial"
    (stage / "truthfulqa").mkdir(parents=True)
    (stage / "truthfulqa" / "TruthfulQA.csv").write_text("Type,Category,Question\n")  # finished before the kill
    (stage / "mmlu.unpacking").mkdir()  # an unrelated half-unpacked folder goes with the staging
    served = tmp_path / "mirror" / "truthfulqa" / "data"
    served.mkdir(parents=True)
    (served / "mc_task.json").write_text("[]")
    with serve(tmp_path / "mirror") as srv:
        res = invoke(["data", "prepare-eval", "truthfulqa", "--data-dir", str(data), "--mirror", srv.base])
        assert res.exit_code == 0, res.stderr
        assert [r[0] for r in srv.requests] == ["truthfulqa/data/mc_task.json"]
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == [
        "truthfulqa", "truthfulqa/TruthfulQA.csv", "truthfulqa/data", "truthfulqa/data/mc_task.json",
    ]


def test_force_replaces_an_unpacked_folder_whole(tmp_path):
    src = tmp_path / "mirror" / "mmlu"
    (src / "data" / "dev").mkdir(parents=True)
    (src / "data" / "test").mkdir(parents=True)
    (src / "data" / "test" / "x_test.csv").write_text("q,a,b,c,d,A\n")
    with tarfile.open(src / "data.tar", "w") as t:
        t.add(src / "data", arcname="data")
    data = tmp_path / "data"
    (data / "mmlu" / "data" / "test").mkdir(parents=True)
    (data / "mmlu" / "data" / "test" / "stale_test.csv").write_text("old")
    with serve(tmp_path / "mirror") as srv:
        res = invoke(["data", "prepare-eval", "mmlu", "--data-dir", str(data), "--mirror", srv.base, "--force"])
    assert res.exit_code == 0, res.stderr
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == [
        "mmlu", "mmlu/data", "mmlu/data/dev", "mmlu/data/test", "mmlu/data/test/x_test.csv",
    ]
