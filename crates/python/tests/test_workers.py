"""One shard run split over workers: separate processes (as Spark runs them) and a real local
Ray cluster write, after shard_merge, the bytes of a single shard() call."""

import hashlib
import json
import multiprocessing

import pytest

import shardfeed
from conftest import need


def digests(folder):
    """sha256 of every shard and index, and the manifest without its wall time."""
    files = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.name.endswith((".tfrec", ".tfrec.idx"))
    }
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("seconds")
    return files, manifest


SETTINGS = dict(size=32, shards=7, seed=11, jobs=1)


def one_worker(args):
    src, out, count, index = args
    report = shardfeed.shard(src, out, num_workers=count, worker_index=index, **SETTINGS)
    return index, report.records, len(report.shards), report.manifest


@pytest.fixture(scope="module")
def whole(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "s"
    shardfeed.shard(data / "train", out, **SETTINGS)
    return digests(out)


@pytest.mark.parametrize("count", [2, 3])
def test_worker_processes_merge_into_the_single_run(data, whole, tmp_path, count):
    out = tmp_path / "split"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(count) as pool:
        results = pool.map(one_worker, [(data / "train", out, count, i) for i in range(count)])
    for index, records, shards, manifest in results:
        assert shards == len([n for n in range(7) if n % count == index])
        assert manifest.endswith(f"manifest.part-{index}-of-{count}.json")
    assert sum(r[1] for r in results) == 203
    assert not (out / "manifest.json").exists()
    report = shardfeed.shard_merge(out)
    assert report.records == 203 and len(report.shards) == 7
    assert digests(out) == whole


def test_a_missing_worker_is_named_and_its_rerun_completes_the_set(data, whole, tmp_path):
    out = tmp_path / "split"
    for index in (0, 2):
        one_worker((data / "train", out, 3, index))
    with pytest.raises(shardfeed.ShardfeedError, match="worker index 1 has not finished"):
        shardfeed.shard_merge(out)
    one_worker((data / "train", out, 3, 1))
    shardfeed.shard_merge(out)
    assert digests(out) == whole


def test_the_index_comes_from_the_scheduler_environment(data, whole, tmp_path, monkeypatch):
    out = tmp_path / "split"
    for index in range(2):
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(index))
        shardfeed.shard(data / "train", out, num_workers=2, **SETTINGS)
    monkeypatch.delenv("JOB_COMPLETION_INDEX")
    shardfeed.shard_merge(out)
    assert digests(out) == whole
    with pytest.raises(ValueError, match="no worker index"):
        shardfeed.shard(data / "train", tmp_path / "x", num_workers=2, **SETTINGS)


RAY_SCRIPT = """
import sys, ray, shardfeed
src, out, settings = sys.argv[1], sys.argv[2], eval(sys.argv[3])
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

@ray.remote
def shard_part(index, count):
    return shardfeed.shard(src, out, num_workers=count, worker_index=index, **settings).records

print(sum(ray.get([shard_part.remote(i, 3) for i in range(3)])))
ray.shutdown()
"""


def test_a_real_local_ray_cluster_shards_the_set(data, whole, tmp_path):
    """The README's Ray recipe, run: one Ray task per worker index on a local cluster (in its
    own process: Ray forks, and this one may already hold JAX's threads)."""
    import importlib.util
    import subprocess
    import sys

    need(importlib.util.find_spec("ray") is not None,
         "ray is not installed (pip install -r requirements-test.txt)")
    out = tmp_path / "ray"
    result = subprocess.run(
        [sys.executable, "-c", RAY_SCRIPT, str(data / "train"), str(out), repr(SETTINGS)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == "203"
    shardfeed.shard_merge(out)
    assert digests(out) == whole
