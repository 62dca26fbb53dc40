"""Loader: exact cover per epoch over ranks, equal batch counts, exact resume (also across a
world-size change), determinism across jobs, damaged records both ways, dtype/layout, and
prompt thread shutdown."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

import shardfeed
from conftest import cli_binary, need


def ids(images):
    """One digest per image: the identity of a record in these tests."""
    return [hashlib.blake2b(np.ascontiguousarray(im).tobytes(), digest_size=8).hexdigest()
            for im in images]


def epoch_ids(loader):
    out = []
    for images, labels in loader:
        out.append(tuple(ids(images)))
    return out


def test_batches_have_the_promised_types_and_shapes(shards):
    nhwc = shardfeed.Loader(shards, batch_size=16, dtype="uint8", seed=1)
    images, labels = next(iter(nhwc))
    assert images.shape == (16, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (16,) and labels.dtype == np.int64
    assert images.flags["C_CONTIGUOUS"] and images.flags["WRITEABLE"]
    f32, labels2 = next(iter(shardfeed.Loader(shards, batch_size=16, seed=1)))
    assert f32.dtype == np.float32 and f32.min() >= 0.0 and f32.max() <= 1.0
    np.testing.assert_array_equal(f32, images.astype(np.float32) * np.float32(1 / 255))
    nchw, _ = next(iter(shardfeed.Loader(shards, batch_size=16, seed=1, layout="NCHW")))
    assert nchw.shape == (16, 3, 32, 32)
    np.testing.assert_array_equal(nchw, f32.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(labels, labels2)


def test_len_is_batches_per_epoch_and_an_epoch_holds_each_record_once(shards):
    loader = shardfeed.Loader(shards, batch_size=10, drop_remainder=False)
    batches = epoch_ids(loader)
    assert len(batches) == len(loader) == 21
    flat = [i for b in batches for i in b]
    assert len(flat) == 203 == len(set(flat))
    assert [len(b) for b in batches][-1] == 3
    dropping = shardfeed.Loader(shards, batch_size=10)
    assert len(dropping) == 20 and len(epoch_ids(dropping)) == 20
    assert dropping.stats()["dropped"] == 3


def test_the_next_iter_is_the_next_epoch_in_a_new_order(shards):
    loader = shardfeed.Loader(shards, batch_size=32)
    first, second = epoch_ids(loader), epoch_ids(loader)
    assert loader.epoch == 2
    assert sorted(i for b in first for i in b) != sorted(i for b in second for i in b) or first != second
    assert first != second


RANK_SCRIPT = r"""
import json, sys, hashlib, numpy as np, shardfeed
shards, rank, world, drop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
loader = shardfeed.Loader(shards, batch_size=8, rank=rank, world_size=world, drop_remainder=drop, dtype="uint8", epochs=2)
out = [[hashlib.blake2b(im.tobytes(), digest_size=8).hexdigest() for im in images] for images, _ in loader]
print(json.dumps({"len": len(loader), "batches": out, "padded": loader.stats()["padded"]}))
"""


def run_ranks(shards, world, drop):
    procs = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(shards), str(r), str(world),
                               "1" if drop else "0"], stdout=subprocess.PIPE)
             for r in range(world)]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        results.append(json.loads(out))
    return results


@pytest.mark.parametrize("drop", [True, False])
def test_ranks_in_separate_processes_cover_each_epoch_exactly(shards, drop):
    single = run_ranks(shards, 1, drop)[0]
    four = run_ranks(shards, 4, drop)
    per_rank = {len(r["batches"]) for r in four}
    assert len(per_rank) == 1, "every rank yields the same number of batches"
    assert {r["len"] for r in four} == {len(four[0]["batches"]) // 2}
    epoch_batches = len(four[0]["batches"]) // 2
    for epoch in range(2):
        whole = [i for b in single["batches"][epoch * single["len"]:(epoch + 1) * single["len"]] for i in b]
        got = []
        for r in four:
            for b in r["batches"][epoch * epoch_batches:(epoch + 1) * epoch_batches]:
                got.extend(b)
        padded = sum(r["padded"] for r in four) // 2
        if drop:
            assert len(got) == len(set(got)) == 192  # 203 // 32 * 32
            assert set(got) <= set(whole)
        else:
            assert len(whole) == 203 and set(got) == set(whole)
            assert len(got) == 203 + padded
            assert padded == (11 + 3) // 4 * 4 - 11


def test_resume_gives_exactly_the_uninterrupted_batches(shards):
    def make():
        return shardfeed.Loader(shards, batch_size=16, epochs=3, drop_remainder=False)
    reference = epoch_ids(make())
    per_epoch = len(make())
    for k in [0, 1, 5, per_epoch - 1, per_epoch, per_epoch + 3, 3 * per_epoch - 1]:
        loader = make()
        it = iter(loader)
        for _ in range(k):
            next(it)
        state = json.loads(json.dumps(loader.state_dict()))
        del it
        resumed = make()
        resumed.load_state_dict(state)
        rest = epoch_ids(resumed)  # one pass: to the end of the run of 3 epochs
        assert rest == reference[k:], f"resumed after {k} batches"


def test_resume_with_another_world_size_covers_the_rest_once(shards):
    two = [shardfeed.Loader(shards, batch_size=8, rank=r, world_size=2, drop_remainder=False,
                            dtype="uint8") for r in range(2)]
    seen = []
    states = []
    for loader in two:
        it = iter(loader)
        for _ in range(3):
            seen.extend(ids(next(it)[0]))
        states.append(loader.state_dict())
    assert states[0] == states[1], "the state is the same on every rank"
    three = [shardfeed.Loader(shards, batch_size=8, rank=r, world_size=3, drop_remainder=False,
                              dtype="uint8") for r in range(3)]
    counts = []
    for loader in three:
        loader.load_state_dict(states[0])
        batches = epoch_ids(loader)
        counts.append(len(batches))
        seen.extend(i for b in batches for i in b)
    assert len(set(counts)) == 1
    padded = sum(l.stats()["padded"] for l in three)
    assert len(seen) == 203 + padded and len(set(seen)) == 203


def test_a_foreign_state_is_refused(shards):
    state = shardfeed.Loader(shards, batch_size=8).state_dict()
    with pytest.raises(ValueError, match="batch_size"):
        shardfeed.Loader(shards, batch_size=16).load_state_dict(state)
    with pytest.raises(ValueError, match="order"):
        shardfeed.Loader(shards, batch_size=8, seed=5).load_state_dict(state)
    with pytest.raises(ValueError, match="deterministic"):
        shardfeed.Loader(shards, batch_size=8, deterministic=False).load_state_dict(state)


def test_the_same_batches_whatever_the_jobs(shards):
    runs = [epoch_ids(shardfeed.Loader(shards, batch_size=16, jobs=j, cache=c))
            for j, c in [(1, True), (2, False), (4, True)]]
    assert runs[0] == runs[1] == runs[2]


def test_damaged_records_skipped_and_counted(damaged_copy):
    copy, first, offset = damaged_copy
    loader = shardfeed.Loader(copy, batch_size=8, on_damaged="skip", drop_remainder=False)
    total = sum(len(labels) for _, labels in loader)
    assert total == 202
    stats = loader.stats()
    assert stats["skipped_count"] == 1
    skipped = stats["skipped"][0]
    assert (skipped["path"], skipped["offset"], skipped["record"]) == (str(first), offset, 2)


def test_damaged_records_raise_with_where(damaged_copy):
    copy, first, offset = damaged_copy
    with pytest.raises(shardfeed.DamagedRecordError) as caught:
        for _ in shardfeed.Loader(copy, batch_size=8):
            pass
    error = caught.value
    assert (error.path, error.offset, error.record) == (str(first), offset, 2)
    assert str(offset) in str(error) and first.name in str(error)


def threads():
    return len(os.listdir("/proc/self/task"))


def test_breaking_out_stops_every_worker_thread(shards):
    before = threads()
    loader = shardfeed.Loader(shards, batch_size=8, jobs=4, epochs=None)
    for n, _ in enumerate(loader):
        if n == 0:
            during = threads()
        if n == 3:
            break
    deadline = time.time() + 2
    while threads() > before and time.time() < deadline:
        time.sleep(0.01)
    # The batcher at least is still alive, blocked on the full prefetch queue.
    assert during > before, (before, during)
    assert threads() == before, "every worker joined after the loop ended"


def test_stats_report_stages_and_rates(shards):
    loader = shardfeed.Loader(shards, batch_size=16)
    n = sum(len(l) for _, l in loader)
    stats = loader.stats()
    assert stats["images"] == n and stats["batches"] == len(loader)
    assert stats["images_per_second"] > 0 and 0 <= stats["wait_fraction"] <= 1
    names = [s["name"] for s in stats["stages"]]
    assert "map" in names and all(s["busy_seconds"] >= 0 for s in stats["stages"])
    # The decode workers and prefetch depth are tuned while running, within jobs' cap.
    tuning = stats["autotune"]
    assert 1 <= tuning["workers"] <= tuning["max_workers"] <= os.cpu_count()
    assert 2 <= tuning["prefetch"] <= tuning["max_prefetch"]
    assert tuning["summary"].startswith("autotune: ")
    capped = shardfeed.Loader(shards, batch_size=16, jobs=1)
    for _ in capped:
        pass
    assert capped.stats()["autotune"]["max_workers"] == 1
    json.dumps(stats)


def test_stats_use_the_names_and_figures_of_the_cli_json(shards):
    binary = cli_binary()
    need(binary is not None, "SHARDFEED_BIN (the shardfeed binary) is not set")
    cli = json.loads(subprocess.run(
        [str(binary), "stream", str(shards), "--json", "--epochs", "1", "--batch", "16"],
        check=True, capture_output=True, text=True).stdout)
    loader = shardfeed.Loader(shards, batch_size=16, epochs=1)
    for _ in loader:
        pass
    stats = loader.stats()
    shared = {"images", "batches", "seconds", "images_per_second", "waited_seconds",
              "cache_hits", "cache_overflow", "stages", "autotune"}
    assert shared <= cli.keys() and shared <= stats.keys(), (cli.keys(), stats.keys())
    # 203 records in batches of 16, the partial batch dropped: 12 batches either way.
    assert (stats["images"], stats["batches"]) == (cli["images"], cli["batches"]) == (192, 12)
    assert [s.keys() for s in stats["stages"]] == [s.keys() for s in cli["stages"]]
    assert stats["autotune"].keys() == cli["autotune"].keys()
    change_keys = {"at_seconds", "workers", "prefetch", "why"}
    assert all(c.keys() == change_keys for c in stats["autotune"]["changes"] + cli["autotune"]["changes"])


def test_split_matches_the_training_split(shards):
    train = shardfeed.Loader(shards, split=("train", 0.19))
    validation = shardfeed.Loader(shards, split=("validation", 0.19), batch_size=8)
    assert len(validation.files) == 1 and len(train.files) == 7  # floor(8 × 0.19) = 1
    assert set(train.files).isdisjoint(validation.files)
    assert train.records + validation.records == 203


def test_bad_settings_are_value_errors(shards, tmp_path):
    for kwargs in [dict(rank=2, world_size=2), dict(dtype="float64"), dict(layout="HWC"),
                   dict(on_damaged="ignore"), dict(batch_size=0), dict(split=("test", 0.2))]:
        with pytest.raises(ValueError):
            shardfeed.Loader(shards, **kwargs)
    with pytest.raises(ValueError, match="fewer than one batch"):
        shardfeed.Loader(shards, batch_size=64, world_size=4)
    # The CLI's ranges, as ValueErrors (they were a panic, a division by zero, an abort).
    with pytest.raises(ValueError, match=r"jobs 100000 is not in 1..=1024"):
        shardfeed.Loader(shards, jobs=10**5)
    with pytest.raises(ValueError, match=r"batch_size 1000000 is not in 1..=65536"):
        shardfeed.Loader(shards, batch_size=10**6)
    with pytest.raises(ValueError, match="too large"):
        shardfeed.Loader(shards, batch_size=4, rank=0, world_size=2**62)
    with pytest.raises(FileNotFoundError):
        shardfeed.Loader(tmp_path / "none")
    with pytest.raises(FileNotFoundError):
        shardfeed.Loader(str(tmp_path / "*.tfrec"))


def test_globs_and_lists(shards):
    files = sorted(str(p) for p in shards.glob("*.tfrec"))
    assert shardfeed.Loader(str(shards / "*.tfrec")).records == 203
    assert shardfeed.Loader(files[:2]).files == files[:2]


def test_urls_with_credentials_are_refused_without_echoing_them():
    for url in ["https://me:s3cr3t@host/shards", "az://c/shards?sv=1&sig=s3cr3t"]:
        with pytest.raises(ValueError) as caught:
            shardfeed.Loader(url)
        message = str(caught.value)
        assert "s3cr3t" not in message and "***" in message and "environment" in message


def test_a_folder_that_disagrees_with_its_manifest_raises_unless_told(shards, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    first = sorted(copy.glob("*.tfrec"))[0]
    first.rename(tmp_path / first.name)  # an interrupted copy: one shard missing
    with pytest.raises(ValueError, match=f"{first.name} is listed in manifest.json but not in the folder"):
        shardfeed.Loader(copy)
    loader = shardfeed.Loader(copy, ignore_manifest=True)
    assert loader.records < 203


TF_IMAGE_KEYS = pathlib.Path(__file__).resolve().parents[3] / "fixtures" / "tf-image-keys"


def test_tensorflow_written_records_load_as_squares_with_a_note():
    expected = json.loads((TF_IMAGE_KEYS / "expected.json").read_text())
    with pytest.warns(UserWarning, match="records of varying size"):
        loader = shardfeed.Loader(str(TF_IMAGE_KEYS / "train-*"), batch_size=4, size=40,
                                  drop_remainder=False, epochs=1)
    assert "40 × 40" in loader.note
    labels = []
    for images, batch_labels in loader:
        assert images.shape[1:] == (40, 40, 3)
        labels.extend(batch_labels.tolist())
    want = sorted(r["label"] for records in expected["files"].values() for r in records)
    assert sorted(labels) == want


def test_crop_shards_need_no_note_and_other_keys_are_named(shards, tmp_path):
    assert shardfeed.Loader(shards, batch_size=8).note is None
    with pytest.raises(ValueError, match="size 7 is not in"):
        shardfeed.Loader(shards, batch_size=8, size=7)
    with pytest.raises(shardfeed.DamagedRecordError, match='feature "jpeg" is missing'):
        for _ in shardfeed.Loader(shards, batch_size=8, image_key="jpeg"):
            pass


def test_records_reads_tensorflows_keys():
    got = list(shardfeed.records(TF_IMAGE_KEYS / "train-00000-of-00002"))
    assert len(got) == 12 and all(jpeg[:2] == b"\xff\xd8" for jpeg, _ in got)
    assert sorted(label for _, label in got) == [0] * 6 + [1] * 6
