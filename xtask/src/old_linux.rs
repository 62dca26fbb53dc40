//! The wheel on an older Linux than the one that built it: Debian 11 (glibc 2.31, Python 3.9,
//! the oldest CPython the abi3 wheel supports), made with `debootstrap` from Debian's archive
//! into `target/old-linux/` (kept between runs), entered with `chroot`. The wheel is installed
//! in a fresh venv there (numpy from PyPI) and shards and loads a small generated folder. A
//! wheel tagged for the build machine's glibc (2.34+) would not install there at all.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::util;

const SUITE: &str = "bullseye";
const MIRROR: &str = "http://deb.debian.org/debian";
/// Written last by a finished `debootstrap`: a folder without it is made again.
const DONE: &str = ".shardfeed-debootstrap-done";

/// Shards 48 generated images and reads them back through the `Loader`, in the chroot.
const SCRIPT: &str = r#"
import platform, shutil, shardfeed
shutil.rmtree("/tmp/t", ignore_errors=True)
shardfeed.synthetic("/tmp/t/data", train=48, test=0)
report = shardfeed.shard("/tmp/t/data/train", "/tmp/t/shards", size=64, shards=4)
assert report.records == 48, report.records
seen = 0
for images, labels in shardfeed.Loader("/tmp/t/shards", batch_size=8):
    assert images.shape[1:] == (64, 64, 3) and images.dtype == "float32", images.shape
    seen += len(labels)
assert seen == 48, seen
print(f"old linux: glibc {platform.libc_ver()[1]}, Python {platform.python_version()}: "
      f"installed, sharded and loaded {seen} records")
"#;

/// Installs `wheel` on Debian 11 and runs [`SCRIPT`] there. Needs root (chroot) and
/// `debootstrap`; without them it says loudly that it skipped (a failure under CI).
pub fn check(wheel: &Path) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return util::skipped("the wheel on Debian 11", "chroot needs root");
    }
    let Some(debootstrap) = ["/usr/sbin/debootstrap", "/usr/bin/debootstrap"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        return util::skipped(
            "the wheel on Debian 11",
            "debootstrap is not installed (apt-get install debootstrap; .ci/run does)",
        );
    };
    let root = util::root().join("target/old-linux").join(SUITE);
    if !root.join(DONE).exists() {
        if root.exists() {
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("cannot clear {}", root.display()))?;
        }
        util::run(
            Command::new(&debootstrap)
                .args(["--variant=minbase", "--include=python3,python3-venv"])
                .arg(SUITE)
                .arg(&root)
                .arg(MIRROR),
        )?;
        std::fs::write(root.join(DONE), "")?;
    }
    // What the chroot needs from this machine: name resolution, the CA bundle pip is told to
    // trust here (a proxy's own CA, where there is one), and the wheel.
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf"))
        .context("copying /etc/resolv.conf into the chroot")?;
    let ca = ["PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"]
        .into_iter()
        .find_map(std::env::var_os)
        .map(PathBuf::from)
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    std::fs::copy(&ca, root.join("tmp/host-ca.crt"))
        .with_context(|| format!("copying {} into the chroot", ca.display()))?;
    let name = wheel.file_name().context("a wheel file name")?;
    let inside = Path::new("/tmp").join(name);
    std::fs::copy(wheel, root.join(inside.strip_prefix("/")?))?;
    std::fs::write(root.join("tmp/old_linux_check.py"), SCRIPT)?;
    let steps = format!(
        "set -e; rm -rf /tmp/venv; python3 -m venv /tmp/venv; \
         /tmp/venv/bin/pip install --quiet --disable-pip-version-check {}; \
         /tmp/venv/bin/python /tmp/old_linux_check.py",
        inside.display()
    );
    let status = Command::new("chroot")
        .arg(&root)
        .args([
            "/usr/bin/env",
            "-i",
            "PATH=/usr/bin:/bin",
            "HOME=/root",
            "LANG=C.UTF-8",
        ])
        .arg("PIP_CERT=/tmp/host-ca.crt")
        .args(["/bin/sh", "-c", &steps])
        .status()
        .context("cannot start chroot")?;
    if !status.success() {
        bail!(
            "the wheel failed on Debian 11 ({status}) in the chroot {}",
            root.display()
        );
    }
    Ok(())
}
