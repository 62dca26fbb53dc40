"""The Python API on a real S3 API server (moto_server on loopback): shard() writes to S3,
Loader reads from it the same batches as from local disk, split runs merge there, and
inspect()/records() read objects."""

import hashlib
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

import shardfeed
from conftest import need


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    server = pathlib.Path(sys.executable).with_name("moto_server")
    need(server.exists(), "moto_server is not installed (pip install -r requirements-test.txt)")
    port = free_port()
    process = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=2)
            break
        except Exception:
            if time.time() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.1)
    env = dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)

    def bucket(name):
        request = urllib.request.Request(f"{endpoint}/{name}", method="PUT")
        assert urllib.request.urlopen(request).status == 200

    yield bucket
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    process.kill()
    process.wait()


def batches(loader):
    digest = hashlib.sha256()
    count = 0
    for images, labels in loader:
        digest.update(np.ascontiguousarray(images).tobytes())
        digest.update(labels.tobytes())
        count += len(labels)
    return count, digest.hexdigest()


def test_shard_to_s3_and_load_the_same_batches(data, shards, s3):
    s3("pyshards")
    report = shardfeed.shard(data / "train", "s3://pyshards/s", size=32, shards=8, jobs=2)
    assert report.records == 203
    assert report.manifest == "s3://pyshards/s/manifest.json"
    local = shardfeed.Loader(shards, batch_size=16, seed=4, drop_remainder=False)
    remote = shardfeed.Loader("s3://pyshards/s", batch_size=16, seed=4, drop_remainder=False)
    assert len(local) == len(remote)
    assert batches(remote) == batches(local)
    first = report.shards[0]
    assert first.startswith("s3://pyshards/s/data00-")
    (reported,) = shardfeed.inspect(first)
    assert reported["records"] > 0 and reported["error"] is None
    local_records = list(shardfeed.records(shards / first.rsplit("/", 1)[1]))
    assert list(shardfeed.records(first)) == local_records


def test_workers_merge_on_s3(data, s3):
    s3("pysplit")
    for index in (1, 0):
        shardfeed.shard(data / "train", "s3://pysplit/s", size=32, shards=8, jobs=1,
                        num_workers=2, worker_index=index)
    report = shardfeed.shard_merge("s3://pysplit/s")
    assert report.records == 203 and len(report.shards) == 8
    with pytest.raises(shardfeed.ShardfeedError, match="no part manifests"):
        s3("pyempty")
        shardfeed.shard_merge("s3://pyempty/s")


def test_a_child_forked_after_remote_reads_reads_again(data, s3):
    """A child forked after remote calls (a live storage runtime in the parent) makes its own
    runtime and clients: it reads the remote shards instead of hanging."""
    from test_fork import epoch_labels, in_child

    s3("forked")
    shardfeed.shard(data / "train", "s3://forked/s", size=32, shards=4, jobs=2)
    loader = shardfeed.Loader("s3://forked/s", batch_size=16, drop_remainder=False)
    expected = epoch_labels(loader)
    code, output = in_child(lambda: epoch_labels(shardfeed.Loader("s3://forked/s", batch_size=16,
                                                                  drop_remainder=False)))
    assert code == 0, output
    assert output == str(expected)
    code, output = in_child(lambda: epoch_labels(loader))
    assert code == 0, output
    assert output == str(expected)
