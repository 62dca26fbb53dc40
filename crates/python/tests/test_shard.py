"""shard(): the same bytes as the CLI, a report, errors; inspect() and records()."""

import hashlib
import json
import subprocess

import pytest

import shardfeed
from conftest import cli_binary, need


def digest_folder(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.suffix in (".tfrec", ".idx")
    }


def test_report_lists_records_classes_shards(shards):
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["records"] == 203
    assert manifest["classes"] == ["cat", "dog"]
    assert len(list(shards.glob("*.tfrec"))) == 8


def test_same_bytes_as_the_cli(data, tmp_path):
    binary = cli_binary()
    need(binary is not None, "SHARDFEED_BIN (the shardfeed binary) to compare with")
    ours = tmp_path / "py"
    report = shardfeed.shard(data / "train", ours, size=32, shards=4, seed=9, jobs=1)
    theirs = tmp_path / "cli"
    subprocess.run(
        [str(binary), "shard", str(data / "train"), "--out", str(theirs), "--size", "32",
         "--shards", "4", "--seed", "9"],
        check=True, capture_output=True,
    )
    assert digest_folder(ours) == digest_folder(theirs)
    assert len(digest_folder(ours)) == 8
    assert [p.split("/")[-1] for p in report.shards] == sorted(
        p.name for p in ours.glob("*.tfrec"))
    assert report.classes == ["cat", "dog"] and report.skipped == []


def test_skipped_files_are_reported(data, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for p in sorted((data / "train").iterdir())[:10]:
        (src / p.name).write_bytes(p.read_bytes())
    (src / "cat.broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    report = shardfeed.shard(src, tmp_path / "out", size=32, shards=2)
    assert report.records == 10
    assert len(report.skipped) == 1 and report.skipped[0][0].endswith("cat.broken.jpg")
    assert report.skipped[0][1]
    with pytest.raises(shardfeed.ShardfeedError, match="cat.broken.jpg"):
        shardfeed.shard(src, tmp_path / "strict", size=32, shards=2, strict=True)


def test_progress_is_called_and_its_exception_stops_the_run(data, tmp_path):
    calls = []
    shardfeed.shard(data / "train", tmp_path / "a", size=32, shards=2,
                    progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (203, 203)

    def stop(done, total):
        if done > 20:
            raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        shardfeed.shard(data / "train", tmp_path / "b", size=32, shards=2, progress=stop)
    assert not list((tmp_path / "b").glob("*.tfrec")), "an interrupted run leaves no shard"


def test_bad_arguments_are_value_errors(data, tmp_path):
    # The CLI's ranges, as ValueErrors (jobs=10**5 was a panic).
    with pytest.raises(ValueError, match=r"jobs 100000 is not in 1..=1024"):
        shardfeed.shard(data / "train", tmp_path / "x", jobs=10**5)
    with pytest.raises(ValueError, match=r"size 5000 is not in 8..=4096"):
        shardfeed.shard(data / "train", tmp_path / "x", size=5000)
    with pytest.raises(ValueError):
        shardfeed.shard(data / "train", tmp_path / "x", quality=0)
    with pytest.raises(ValueError):
        shardfeed.shard(data / "train", tmp_path / "x", compression="lz4")
    with pytest.raises(FileNotFoundError):
        shardfeed.shard(tmp_path / "missing", tmp_path / "x")


def test_inspect_and_records_agree(shards):
    reports = shardfeed.inspect(shards)
    assert len(reports) == 8
    assert sum(r["records"] for r in reports) == 203
    assert all(r["error"] is None and r["index"]["status"] == "matches" for r in reports)
    assert reports[0]["class_names"] == ["cat", "dog"]
    first = sorted(shards.glob("*.tfrec"))[0]
    got = list(shardfeed.records(first))
    assert len(got) == reports[0]["records"]
    assert all(jpeg[:2] == b"\xff\xd8" and label in (0, 1) for jpeg, label in got)
    assert sum(reports[0]["class_counts"].values()) == len(got)


def test_damaged_files_are_reported_with_offsets(damaged_copy):
    copy, first, offset = damaged_copy
    report = [r for r in shardfeed.inspect(copy) if r["path"].endswith(first.name)][0]
    assert report["error"]["record"] == 2 and report["error"]["offset"] == offset
    with pytest.raises(shardfeed.DamagedRecordError) as caught:
        list(shardfeed.records(first))
    assert (caught.value.path, caught.value.offset, caught.value.record) == (str(first), offset, 2)


def test_urls_are_refused_not_taken_for_folders(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="ftp://host/x: the scheme ftp:// is not supported"):
        shardfeed.shard(data / "train", "ftp://host/x")
    with pytest.raises(ValueError, match="hdfs://b/shards"):
        shardfeed.Loader("hdfs://b/shards")
    with pytest.raises(ValueError, match="a local path is needed here"):
        shardfeed.synthetic("s3://bucket/data")
    assert not (tmp_path / "ftp:").exists() and not (tmp_path / "s3:").exists()
    report = shardfeed.shard(f"file://{data / 'train'}", f"file://{tmp_path / 'out'}", size=32, shards=2)
    assert report.records == 203 and (tmp_path / "out" / "manifest.json").exists()


def test_a_prefix_is_a_plain_file_name_prefix(data, tmp_path):
    for prefix in ["../escape", "a/b", ".hidden"]:
        with pytest.raises(ValueError, match="plain file-name prefix"):
            shardfeed.shard(data / "train", tmp_path / "out", prefix=prefix)
    assert not (tmp_path / "escape00-1.tfrec").exists()


def test_a_failed_overwrite_leaves_the_old_shards(data, tmp_path):
    out = tmp_path / "out"
    shardfeed.shard(data / "train", out, size=16, shards=4, jobs=2)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def stop(done, total):
        if done == 50:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        shardfeed.shard(data / "train", out, size=16, shards=2, jobs=2, overwrite=True,
                        progress=stop)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    shardfeed.shard(data / "train", out, size=16, shards=2, jobs=2, overwrite=True)
    assert sorted(p.name for p in out.glob("*.tfrec")) == ["data00-102.tfrec", "data01-101.tfrec"]


def test_a_folder_another_run_writes_is_refused_naming_it(data, tmp_path):
    import fcntl
    import os

    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".shardfeed.lock"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write(f"held by process {os.getpid()} on here since Unix time 1")
        held.flush()
        with pytest.raises(shardfeed.ShardfeedError,
                           match=r"\.shardfeed\.lock: another shard run is writing there "
                                 rf"\(held by process {os.getpid()} on here"):
            shardfeed.shard(data / "train", out, size=32, shards=2)
    assert [p.name for p in out.iterdir()] == [".shardfeed.lock"], "nothing written"
    shardfeed.shard(data / "train", out, size=32, shards=2)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_python_and_the_cli_resolve_arguments_alike(data, shards, tmp_path):
    """One rule (dataset::folder::resolve) for both front ends: the same files, in the same
    order, read with the same compression, for each kind of argument."""
    binary = cli_binary()
    need(binary is not None, "SHARDFEED_BIN (the shardfeed binary) to compare with")
    gz = tmp_path / "gz"
    shardfeed.shard(data / "train", gz, size=32, shards=3, compression="gzip", jobs=1)
    files = sorted(shards.glob("*.tfrec"))
    cases = [
        [shards],
        [files[3]],
        [files[5], files[1]],
        [shards / "data0[2-4]*.tfrec"],
        [gz],
        [sorted(gz.glob("*.tfrec"))[0], shards / "data07*.tfrec"],
    ]
    for case in cases:
        ours = [(r["path"], r["compression"]) for r in shardfeed.inspect([str(p) for p in case])]
        run = subprocess.run([str(binary), "inspect", "--json", *map(str, case)],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        theirs = [(r["path"], r["compression"]) for r in json.loads(run.stdout)]
        assert ours == theirs, case
        assert len(ours) >= 1
    assert [r["compression"] for r in shardfeed.inspect(gz)] == ["gzip"] * 3


def test_keep_stores_sources_as_they_are_and_fit_bounds_the_longer_side(data, tmp_path):
    sources = {p.read_bytes() for p in (data / "train").glob("*.jpg")}
    kept = shardfeed.shard(data / "train", tmp_path / "keep", resize="keep", shards=2)
    stored = {jpeg for f in sorted((tmp_path / "keep").glob("*.tfrec"))
              for jpeg, _ in shardfeed.records(f)}
    assert kept.records == len(sources) and stored == sources
    manifest = json.loads((tmp_path / "keep" / "manifest.json").read_text())
    assert manifest["resize"] == "keep" and manifest["sizes"]["max_width"] <= 80
    shardfeed.shard(data / "train", tmp_path / "fit", resize="fit", max_side=32, shards=2)
    fitted = json.loads((tmp_path / "fit" / "manifest.json").read_text())
    assert fitted["max_side"] == 32
    assert max(fitted["sizes"]["max_width"], fitted["sizes"]["max_height"]) == 32
    with pytest.raises(ValueError, match="not a resize mode"):
        shardfeed.shard(data / "train", tmp_path / "bad", resize="squash")


def test_labels_from_class_folders_and_a_csv(data, tmp_path):
    src = tmp_path / "tree"
    files = sorted((data / "train").glob("*.jpg"))[:6]
    for i, f in enumerate(files):
        target = src / ("cat" if i % 2 else "dog") / "deep" / f"{i}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
    report = shardfeed.shard(src, tmp_path / "by-folder", labels="folder", keep_names=True,
                             shards=2)
    assert report.classes == ["cat", "dog"] and report.records == 6
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\ncat/deep/1.jpg,a\ndog/deep/0.jpg,b\ndog/deep/2.jpg,\n")
    by_csv = shardfeed.shard(src, tmp_path / "by-csv", labels=f"csv:{csv}", shards=2)
    assert by_csv.records == 2
    reasons = sorted(s[1] for s in by_csv.skipped)
    assert any(r.endswith("line 4: empty label") for r in reasons), reasons
    with pytest.raises(ValueError, match="not a label source"):
        shardfeed.shard(src, tmp_path / "bad", labels="dirs")


def test_png_webp_bmp_gif_tiff_sources_match_a_reference_decoder(tmp_path):
    """A mixed folder (JPEG, PNG 8/16-bit with alpha, palette PNG, WebP, BMP, GIF, TIFF,
    CMYK JPEG, EXIF-rotated JPEG) sharded with resize="keep", exif_orientation="apply": each
    record decodes (Pillow, the reference) to its source's pixels as Pillow shows them
    upright (``exif_transpose``), transparency on white, within JPEG q95 loss."""
    from PIL import Image, ImageOps  # the test venv installs Pillow (requirements-test.txt)
    import numpy as np

    src = tmp_path / "mixed"
    src.mkdir()
    h, w = 36, 52
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], -1).astype(np.uint8)
    alpha = (xx * 255 // w).astype(np.uint8)
    turned = Image.Exif()
    turned[0x0112] = 6  # EXIF orientation: shown turned 90° clockwise

    def pic(i):  # a different picture per file, so records match their sources by pixels
        return np.roll(base, 6 * i, axis=1) // (1 + i % 3)

    made = {
        "cat.1.jpg": lambda p: Image.fromarray(pic(1)).save(p, quality=92),
        "cat.2.png": lambda p: Image.fromarray(np.dstack([pic(2), alpha])).save(p),
        "cat.3.png": lambda p: Image.fromarray(pic(3)).convert("P", palette=Image.ADAPTIVE).save(p),
        "cat.4.png": lambda p: Image.fromarray((pic(4)[..., 0].astype(np.uint16) * 257)).save(p),
        "dog.5.webp": lambda p: Image.fromarray(pic(5)).save(p, lossless=True),
        "dog.6.bmp": lambda p: Image.fromarray(pic(6)).save(p),
        "dog.7.gif": lambda p: Image.fromarray(pic(7)).convert("P").save(p),
        "dog.8.tiff": lambda p: Image.fromarray(pic(8)).save(p),
        "dog.9.jpg": lambda p: Image.fromarray(pic(9)).convert("CMYK").save(p, quality=92),
        "cat.10.jpg": lambda p: Image.fromarray(pic(10)).save(p, quality=92, exif=turned),
    }
    for name, make in made.items():
        make(src / name)
    report = shardfeed.shard(src, tmp_path / "out", resize="keep", shards=2, keep_names=True,
                             exif_orientation="apply")
    assert report.records == len(made) and not report.skipped, report.skipped

    def reference(path):
        image = ImageOps.exif_transpose(Image.open(path))
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image)
        if image.mode == "I;16":
            image = Image.fromarray((np.asarray(image, np.uint32) >> 8).astype(np.uint8))
        return np.asarray(image.convert("RGB"), np.int16)

    import io
    names = {}
    for f in sorted((tmp_path / "out").glob("*.tfrec")):
        for jpeg, _ in shardfeed.records(f):
            decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.int16)
            # Match the record to its source by pixels (keep_names is checked in Rust tests).
            best = min(made, key=lambda n: np.abs(reference(src / n) - decoded).mean()
                       if reference(src / n).shape == decoded.shape else 1e9)
            names[best] = np.abs(reference(src / best) - decoded).mean()
    assert set(names) == set(made), names
    assert max(names.values()) < 3.0, names
