//! Chunk-file writes that bypass the page cache (`O_DIRECT`).
//!
//! A buffered write copies every byte into the page cache, and the fdatasync that follows then
//! has the kernel find, lock and write back those pages: on the durable path that bookkeeping
//! costs more CPU than parsing the requests. With `O_DIRECT` the disk reads the bytes straight
//! from weir's memory, and the page cache is not involved at all.
//!
//! Direct writes must start at an offset, come from an address and have a length that are all
//! multiples of the device's block size ([`ALIGN`] here, which suits every device with blocks
//! of up to 4 KiB). A chunk file, though, is blocks back to back with no gaps (see
//! [`crate::format`]). So each commit writes whole 4 KiB pages: the bytes already in the last,
//! partly filled page (kept in memory, [`Tail`]) followed by the new blocks, padded with zeros
//! up to the next page boundary. The next commit writes that page again, with its own blocks
//! where the zeros were. Rewriting the committed bytes of a page with the same bytes cannot
//! damage them, whatever a crash interrupts: every sector of the page holds either its old or
//! its new contents, and the two agree wherever old bytes were committed.
//!
//! The zeros past the committed length are never part of the chunk: a zero block length ends
//! a scan (recovery cuts them off like any torn tail, quietly when they are only padding), and
//! a chunk file is cut to its committed length before it is queued for delivery.
//!
//! Where the filesystem refuses `O_DIRECT` (tmpfs, some network filesystems), the chunk file
//! is opened normally and written through the page cache, as before.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Offsets, addresses and lengths of direct writes are multiples of this.
pub(crate) const ALIGN: usize = crate::format::PAGE;

/// Most bytes one commit thread stages for a direct write; a bigger batch is written in
/// several pieces of this size (and synced once).
pub(crate) const STAGING: usize = 4 << 20;

/// Opens `path` with the options `options` makes, adding `O_DIRECT` where the filesystem
/// allows it. Returns the file and whether it is direct.
fn open_maybe_direct(path: &Path, options: impl Fn() -> OpenOptions) -> io::Result<(File, bool)> {
    match options().custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((options().open(path)?, false)),
        Err(e) => Err(e),
    }
}

/// Opens a new chunk data file for writing, with `O_DIRECT` where the filesystem allows it.
/// Returns the file and whether it is direct.
pub(crate) fn create(path: &Path, mode: u32) -> io::Result<(File, bool)> {
    open_maybe_direct(path, || {
        let mut o = OpenOptions::new();
        o.write(true).create(true).truncate(true).mode(mode);
        o
    })
}

/// Opens an existing file (a delivered chunk's, reused) for writing without cutting it, with
/// `O_DIRECT` where the filesystem allows it. Returns the file and whether it is direct.
pub(crate) fn open_existing(path: &Path) -> io::Result<(File, bool)> {
    open_maybe_direct(path, || {
        let mut o = OpenOptions::new();
        o.write(true);
        o
    })
}

/// Drops the page cache's copy of a file (clean pages only; a hint). A delivered chunk's file
/// was read through the page cache; if it is reused, every direct write to it would first have
/// to drop the cached pages it covers, on the commit thread. Dropping them at once when the
/// file is set aside keeps that work off the path of the acks.
pub(crate) fn drop_cache(path: &Path) {
    if let Ok(f) = File::open(path) {
        crate::read::advise(&f, 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// Turns `O_DIRECT` off for an open file: later writes go through the page cache. For a
/// device that refuses page-aligned direct writes (`EINVAL`), which a few do.
pub(crate) fn disable(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl with F_GETFL/F_SETFL only reads and sets the flags of an open descriptor
    // that `file` keeps open for the duration of the calls.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel to back `mem` with transparent huge pages (a hint: without them, or where
/// they are off, nothing changes).
fn advise_huge_pages(mem: &mut [u8]) {
    // SAFETY: madvise with MADV_HUGEPAGE only changes how the kernel backs the pages of a
    // range this slice owns; it does not change their contents or make them invalid.
    unsafe {
        libc::madvise(mem.as_mut_ptr().cast(), mem.len(), libc::MADV_HUGEPAGE);
    }
}

/// The committed bytes of a direct chunk file's last, partly filled page.
#[derive(Debug, Default)]
pub(crate) struct Tail(Vec<u8>);

impl Tail {
    fn page_start(len: u64) -> u64 {
        len - len % ALIGN as u64
    }
}

/// A commit thread's aligned staging memory, reused from one commit to the next.
#[derive(Default)]
pub(crate) struct Staging {
    mem: Vec<u8>,
    /// Where the aligned part of `mem` starts.
    start: usize,
    /// Bytes staged so far (from `start`).
    used: usize,
}

/// The staging memory is aligned to this (the size of an x86-64 or arm64 huge page) and asked
/// to be backed by huge pages: a direct write pins every page it reads from, and with 4 KiB
/// pages that pinning cost as much as a fifth of the copy into the staging memory.
const HUGE_PAGE: usize = 2 << 20;

impl Staging {
    fn ensure(&mut self) {
        if self.mem.is_empty() {
            // Zeroed and untouched until used: the extra room for the alignment costs address
            // space, not memory.
            self.mem = vec![0; STAGING + HUGE_PAGE];
            self.start = self.mem.as_ptr().align_offset(HUGE_PAGE).min(HUGE_PAGE);
            advise_huge_pages(&mut self.mem[self.start..self.start + STAGING]);
        }
    }

    fn room(&self) -> usize {
        STAGING - self.used
    }

    fn push(&mut self, bytes: &[u8]) {
        let at = self.start + self.used;
        self.mem[at..at + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
    }

    /// Pads what is staged with zeros up to a whole number of pages and returns it.
    fn padded(&mut self) -> &[u8] {
        let end = self.used.div_ceil(ALIGN) * ALIGN;
        let (from, to) = (self.start + self.used, self.start + end);
        self.mem[from..to].fill(0);
        &self.mem[self.start..to]
    }
}

/// Writes `blocks` (byte pieces, back to back) to a direct chunk file whose committed length
/// is `len` and whose last partial page is `tail`, in whole pages starting at the page that
/// holds `len`. Does not sync. Returns the new committed length; `tail` then holds the new
/// last partial page. On error the file holds the old committed bytes up to `len` and anything
/// past it is garbage that the caller cuts off; `tail` is left as it was.
pub(crate) fn write(
    file: &File,
    staging: &mut Staging,
    tail: &mut Tail,
    len: u64,
    blocks: &[&[u8]],
) -> io::Result<u64> {
    staging.ensure();
    staging.used = 0;
    let mut at = Tail::page_start(len);
    debug_assert_eq!((len - at) as usize, tail.0.len());
    staging.push(&tail.0);
    let mut end = len;
    for block in blocks {
        let mut rest: &[u8] = block;
        while !rest.is_empty() {
            if staging.room() == 0 {
                file.write_all_at(staging.padded(), at)?;
                at += STAGING as u64;
                staging.used = 0;
            }
            let n = rest.len().min(staging.room());
            staging.push(&rest[..n]);
            rest = &rest[n..];
        }
        end += block.len() as u64;
    }
    let partial = staging.used % ALIGN;
    let last_page = staging.start + staging.used - partial;
    let new_tail = staging.mem[last_page..last_page + partial].to_vec();
    file.write_all_at(staging.padded(), at)?;
    tail.0 = new_tail;
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::is_padding;
    use proptest::prelude::*;

    /// A fresh directory under the system temp dir.
    fn disk_dir(name: &str) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "weir-direct-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// True when `dir` is on ext4 or xfs, which always take O_DIRECT.
    fn takes_o_direct(dir: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt as _;
        let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: statfs writes into the zeroed struct and reads the NUL-terminated path.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return false;
        }
        const EXT4: i64 = 0xEF53;
        const XFS: i64 = 0x5846_5342;
        matches!(st.f_type as i64, EXT4 | XFS)
    }

    fn check_appends(dir: &Path, name: &str, commits: &[Vec<Vec<u8>>]) -> bool {
        let path = dir.join(name);
        let (file, direct) = create(&path, 0o600).unwrap();
        let mut staging = Staging::default();
        let mut tail = Tail::default();
        let mut len = 0u64;
        let mut expected = Vec::new();
        for blocks in commits {
            let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
            if direct {
                len = write(&file, &mut staging, &mut tail, len, &refs).unwrap();
            } else {
                for b in &refs {
                    file.write_all_at(b, len).unwrap();
                    len += b.len() as u64;
                }
            }
            for b in blocks {
                expected.extend_from_slice(b);
            }
            assert_eq!(len, expected.len() as u64);
        }
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[..expected.len()], &expected[..]);
        assert!(is_padding(&on_disk[expected.len()..]));
        if direct {
            assert_eq!(on_disk.len() % ALIGN, 0);
        }
        direct
    }

    #[test]
    fn commits_land_back_to_back_with_only_padding_after_them() {
        let dir = disk_dir("fixed");
        let big = vec![7u8; STAGING + 3 * ALIGN + 5];
        let commits = vec![
            vec![b"one".to_vec()],
            vec![vec![1u8; ALIGN - 3], b"two".to_vec()],
            vec![vec![2u8; 10]],
            vec![big, vec![9u8; 1]],
            vec![vec![3u8; ALIGN]],
        ];
        let direct = check_appends(&dir, "chunk", &commits);
        if takes_o_direct(&dir) {
            assert!(
                direct,
                "{} is on ext4 or xfs but was not opened O_DIRECT",
                dir.display()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_filesystem_without_o_direct_gets_a_normal_file() {
        // /dev/shm is tmpfs on Linux; older kernels refuse O_DIRECT there.
        let dir = std::path::Path::new("/dev/shm");
        if !dir.is_dir() {
            return;
        }
        let path = dir.join(format!("weir-direct-{}", std::process::id()));
        let (file, _direct) = create(&path, 0o600).unwrap();
        file.write_all_at(b"x", 0).unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_disabled_file_takes_unaligned_writes() {
        let dir = disk_dir("disable");
        let path = dir.join("chunk");
        let (file, direct) = create(&path, 0o600).unwrap();
        if direct {
            // Three bytes at offset 1 from an unaligned address: refused while direct.
            let odd = [1u8, 2, 3, 4];
            assert!(file.write_all_at(&odd[1..], 1).is_err());
            disable(&file).unwrap();
        }
        file.write_all_at(b"abc", 1).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"\0abc");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn padding_is_short_zeros_only() {
        assert!(is_padding(&[]));
        assert!(is_padding(&[0; ALIGN - 1]));
        assert!(!is_padding(&[0; ALIGN]));
        assert!(!is_padding(&[0, 0, 1]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_sequence_of_commits_reads_back(
            commits in prop::collection::vec(
                prop::collection::vec(
                    prop::collection::vec(any::<u8>(), 1..3 * ALIGN),
                    1..4,
                ),
                1..8,
            )
        ) {
            let dir = disk_dir("prop");
            check_appends(&dir, "chunk", &commits);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
