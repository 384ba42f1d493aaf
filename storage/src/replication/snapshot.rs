//! Raft snapshots as files: a partition's RocksDB checkpoint, streamed to a follower on its
//! own rate-limited connection and swapped in atomically there.
//!
//! - The leader's partition worker writes a checkpoint (hard links to the immutable SST
//!   files plus copies of the small live files) into `snapshots/send-<group>-<index>-<n>/`
//!   (`n` numbers the node's checkpoints, so two of the same index never share a
//!   directory); the database inside holds its applied state, so the checkpoint is exactly
//!   the state at `index`. [`SnapshotFiles`] owns such a directory and deletes it when the
//!   last holder (the store loop's offer, a transfer in flight) lets go.
//! - [`send`] streams the files and then the raft `MsgSnapshot` over a connection of its
//!   own to the follower's raft port, at most at the node's snapshot rate
//!   ([`RateLimiter`]), so bulk data never queues behind (or in front of) raft messages.
//! - [`receive`] writes the files into `snapshots/recv-<group>-<index>.partial/`, syncs
//!   them, renames the directory to `recv-<group>-<index>/`, hands the raft message to the
//!   store loop and only then acknowledges. The follower's raft log records the snapshot
//!   before its worker swaps the directory in ([`swap_in`]); a crash in between is finished
//!   at start-up from the received directory, which is kept until it is swapped in.
//!
//! Stream, after the connection's kind byte `S`: `u64-BE group`, `u32-BE length` + the
//! protobuf `Message`, `u32-BE file count`, then per file `u16-BE name length`, the name (a
//! plain file name), `u64-BE size` and the bytes; then `u64-BE` total file bytes. The
//! receiver answers one byte: 1 stored and delivered, 0 refused.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::log_store::GroupId;
use super::store::GroupMessage;

/// Kind byte of a snapshot connection (raft batch connections start with [`RAFT_STREAM`]).
pub const SNAPSHOT_STREAM: u8 = b'S';
/// Kind byte of a raft message connection.
pub const RAFT_STREAM: u8 = b'R';

/// Bytes read and written per step of a transfer.
const CHUNK: usize = 256 << 10;
/// Most files a snapshot may hold.
const MAX_FILES: u32 = 100_000;
/// Largest raft message header accepted with a snapshot.
const MAX_MESSAGE: u32 = 16 << 20;

/// Counters of snapshot transfers.
#[derive(Debug, Default)]
pub struct SnapshotStats {
    /// Snapshots sent and acknowledged.
    pub sent: AtomicU64,
    /// File bytes sent.
    pub sent_bytes: AtomicU64,
    /// Transfers that failed.
    pub send_failures: AtomicU64,
    /// Snapshots received and handed to raft.
    pub received: AtomicU64,
    /// File bytes received.
    pub received_bytes: AtomicU64,
    /// Snapshots installed by partition workers.
    pub installed: AtomicU64,
}

/// The snapshot directories of a node, under `<data_dir>/snapshots`.
#[derive(Debug, Clone)]
pub struct SnapshotDirs {
    root: PathBuf,
    /// Numbers the checkpoint directories handed out (shared by every clone).
    next_send: Arc<AtomicU64>,
}

impl SnapshotDirs {
    /// The layout under `root`, created if missing.
    pub fn new(root: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(SnapshotDirs {
            root,
            next_send: Arc::new(AtomicU64::new(1)),
        })
    }

    /// A new directory for a leader's checkpoint of `group` at `index`, unlike any other
    /// handed out: a checkpoint still being sent keeps its files while a newer one of the
    /// same index is written, and dropping either leaves the other alone.
    pub fn send_dir(&self, group: GroupId, index: u64) -> PathBuf {
        let n = self.next_send.fetch_add(1, Ordering::Relaxed);
        self.root.join(format!("send-{group}-{index}-{n}"))
    }

    /// Where a follower keeps a received snapshot of `group` at `index` until it is
    /// installed.
    pub fn recv_dir(&self, group: GroupId, index: u64) -> PathBuf {
        self.root.join(format!("recv-{group}-{index}"))
    }

    fn partial_dir(&self, group: GroupId, index: u64) -> PathBuf {
        self.root.join(format!("recv-{group}-{index}.partial"))
    }

    /// Deletes what no one can need after a restart: checkpoints being offered, partial
    /// transfers, and received snapshots of `group` not newer than what `applied` of its
    /// partition covers (`applied` maps group → applied index).
    pub fn clean_at_start(&self, applied: &dyn Fn(GroupId) -> Option<u64>) {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = name.starts_with("send-")
                || name.ends_with(".partial")
                || parse_recv(&name).is_some_and(|(g, i)| applied(g).is_none_or(|a| a >= i));
            if stale {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Deletes received snapshots of `group` other than `keep`.
    pub fn remove_received(&self, group: GroupId, keep: Option<u64>) {
        let Ok(dir) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if parse_recv(&name).is_some_and(|(g, i)| g == group && Some(i) != keep) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn parse_recv(name: &str) -> Option<(GroupId, u64)> {
    let rest = name.strip_prefix("recv-")?;
    let (g, i) = rest.split_once('-')?;
    Some((g.parse().ok()?, i.parse().ok()?))
}

/// A checkpoint directory, deleted when the last handle drops.
#[derive(Debug)]
pub struct SnapshotFiles {
    /// The directory.
    pub dir: PathBuf,
    /// The partition's applied index inside.
    pub index: u64,
}

impl Drop for SnapshotFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Caps the bytes per second of every snapshot transfer of a node together.
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_sec: u64,
    next_free: Mutex<Instant>,
}

impl RateLimiter {
    /// A limiter at `bytes_per_sec` (0 = unlimited).
    pub fn new(bytes_per_sec: u64) -> Self {
        RateLimiter {
            bytes_per_sec,
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes` more may be sent.
    pub async fn acquire(&self, bytes: usize) {
        if self.bytes_per_sec == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let start = {
            let mut next = self.next_free.lock().expect("rate limiter lock poisoned");
            let start = (*next).max(Instant::now());
            *next = start + cost;
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}

/// Streams `files` and then `m` (a `MsgSnapshot`) to `stream`, a fresh connection to the
/// follower's raft port. Returns the file bytes sent once the follower has acknowledged.
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    m: &GroupMessage,
    files: &SnapshotFiles,
    limiter: &RateLimiter,
) -> Result<u64, String> {
    let err = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let mut names: Vec<(String, u64)> = Vec::new();
    let mut dir = tokio::fs::read_dir(&files.dir)
        .await
        .map_err(|e| err("listing the checkpoint", e))?;
    while let Some(entry) = dir
        .next_entry()
        .await
        .map_err(|e| err("listing the checkpoint", e))?
    {
        let meta = entry
            .metadata()
            .await
            .map_err(|e| err("reading the checkpoint", e))?;
        if meta.is_file() {
            names.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
        }
    }
    names.sort();
    let msg = m
        .msg
        .write_to_bytes()
        .expect("encoding a raft message into memory cannot fail");
    let mut head = vec![SNAPSHOT_STREAM];
    head.extend_from_slice(&m.group.to_be_bytes());
    head.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    head.extend_from_slice(&msg);
    head.extend_from_slice(&(names.len() as u32).to_be_bytes());
    stream
        .write_all(&head)
        .await
        .map_err(|e| err("sending", e))?;
    let mut total = 0u64;
    let mut buf = vec![0u8; CHUNK];
    for (name, size) in &names {
        let mut file = tokio::fs::File::open(files.dir.join(name))
            .await
            .map_err(|e| err("opening a checkpoint file", e))?;
        let mut file_head = Vec::with_capacity(name.len() + 10);
        file_head.extend_from_slice(&(name.len() as u16).to_be_bytes());
        file_head.extend_from_slice(name.as_bytes());
        file_head.extend_from_slice(&size.to_be_bytes());
        stream
            .write_all(&file_head)
            .await
            .map_err(|e| err("sending", e))?;
        let mut left = *size;
        while left > 0 {
            let want = (left as usize).min(CHUNK);
            file.read_exact(&mut buf[..want])
                .await
                .map_err(|e| err("reading a checkpoint file", e))?;
            limiter.acquire(want).await;
            stream
                .write_all(&buf[..want])
                .await
                .map_err(|e| err("sending", e))?;
            left -= want as u64;
        }
        total += size;
    }
    stream
        .write_all(&total.to_be_bytes())
        .await
        .map_err(|e| err("sending", e))?;
    stream.flush().await.map_err(|e| err("sending", e))?;
    let mut ack = [0u8; 1];
    stream
        .read_exact(&mut ack)
        .await
        .map_err(|e| err("waiting for the acknowledgement", e))?;
    if ack[0] != 1 {
        return Err("the follower refused the snapshot".into());
    }
    Ok(total)
}

/// Receives one snapshot stream (its kind byte already read), stores its files, hands the
/// raft message to `inbound` and acknowledges. Errors close the connection; the sender
/// reports the failure to raft, which retries.
pub async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    dirs: &SnapshotDirs,
    inbound: &mpsc::Sender<GroupMessage>,
    stats: &SnapshotStats,
) -> Result<(), String> {
    let err = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let group = stream.read_u64().await.map_err(|e| err("reading", e))?;
    let len = stream.read_u32().await.map_err(|e| err("reading", e))?;
    if len > MAX_MESSAGE {
        return Err(format!("raft message of {len} bytes"));
    }
    let mut msg = vec![0u8; len as usize];
    stream
        .read_exact(&mut msg)
        .await
        .map_err(|e| err("reading", e))?;
    let msg = Message::parse_from_bytes(&msg).map_err(|e| format!("bad raft message: {e}"))?;
    if msg.get_msg_type() != MessageType::MsgSnapshot {
        return Err("a snapshot stream without a snapshot message".into());
    }
    let index = msg.get_snapshot().get_metadata().index;
    let partial = dirs.partial_dir(group, index);
    let _ = tokio::fs::remove_dir_all(&partial).await;
    tokio::fs::create_dir_all(&partial)
        .await
        .map_err(|e| err("creating the snapshot directory", e))?;
    let stored = store_files(stream, &partial).await;
    let total = match stored {
        Ok(total) => total,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&partial).await;
            return Err(e);
        }
    };
    let done = dirs.recv_dir(group, index);
    let _ = tokio::fs::remove_dir_all(&done).await;
    tokio::fs::rename(&partial, &done)
        .await
        .map_err(|e| err("renaming the snapshot directory", e))?;
    sync_dir(dirs.root.clone()).await;
    stats.received.fetch_add(1, Ordering::Relaxed);
    stats.received_bytes.fetch_add(total, Ordering::Relaxed);
    info!(group, index, bytes = total, "snapshot received");
    // Waits while the store loop is busy: this message must not be dropped.
    inbound
        .send(GroupMessage { group, msg })
        .await
        .map_err(|_| "the node is stopping".to_string())?;
    stream
        .write_all(&[1])
        .await
        .map_err(|e| err("acknowledging", e))?;
    Ok(())
}

async fn store_files<S: AsyncRead + Unpin>(stream: &mut S, dir: &Path) -> Result<u64, String> {
    let err = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let count = stream.read_u32().await.map_err(|e| err("reading", e))?;
    if count > MAX_FILES {
        return Err(format!("{count} files in a snapshot"));
    }
    let mut total = 0u64;
    let mut buf = vec![0u8; CHUNK];
    for _ in 0..count {
        let name_len = stream.read_u16().await.map_err(|e| err("reading", e))?;
        let mut name = vec![0u8; name_len as usize];
        stream
            .read_exact(&mut name)
            .await
            .map_err(|e| err("reading", e))?;
        let name = String::from_utf8(name).map_err(|_| "a file name is not UTF-8".to_string())?;
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(format!("bad file name {name:?} in a snapshot"));
        }
        let size = stream.read_u64().await.map_err(|e| err("reading", e))?;
        let mut file = tokio::fs::File::create(dir.join(&name))
            .await
            .map_err(|e| err("creating a snapshot file", e))?;
        let mut left = size;
        while left > 0 {
            let want = (left.min(CHUNK as u64)) as usize;
            stream
                .read_exact(&mut buf[..want])
                .await
                .map_err(|e| err("reading", e))?;
            file.write_all(&buf[..want])
                .await
                .map_err(|e| err("writing a snapshot file", e))?;
            left -= want as u64;
        }
        file.sync_all()
            .await
            .map_err(|e| err("syncing a snapshot file", e))?;
        total += size;
    }
    let announced = stream.read_u64().await.map_err(|e| err("reading", e))?;
    if announced != total {
        return Err(format!(
            "snapshot announced {announced} bytes but carried {total}"
        ));
    }
    sync_dir(dir.to_path_buf()).await;
    Ok(total)
}

async fn sync_dir(dir: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || sync_dir_blocking(&dir)).await;
}

fn sync_dir_blocking(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn old_dir(live: &Path) -> PathBuf {
    let mut name = live.file_name().unwrap_or_default().to_os_string();
    name.push(".old");
    live.with_file_name(name)
}

/// Replaces the database directory `live` by the received snapshot `snapshot` (same file
/// system): `live` is renamed aside, the snapshot renamed into place, both parents synced,
/// the old copy deleted. The caller has closed the database in `live`.
pub fn swap_in(live: &Path, snapshot: &Path) -> std::io::Result<()> {
    let old = old_dir(live);
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    if live.exists() {
        std::fs::rename(live, &old)?;
    }
    std::fs::rename(snapshot, live)?;
    for parent in [live.parent(), snapshot.parent()].into_iter().flatten() {
        sync_dir_blocking(parent);
    }
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// Finishes a [`swap_in`] interrupted by a crash: if the live directory is missing, the old
/// one goes back (the snapshot is still in its received directory); a leftover old copy
/// is deleted.
pub fn recover_swap(live: &Path) -> std::io::Result<()> {
    let old = old_dir(live);
    if !old.exists() {
        return Ok(());
    }
    if live.exists() {
        warn!(dir = %old.display(), "deleting the copy a snapshot install left behind");
        std::fs::remove_dir_all(&old)
    } else {
        warn!(dir = %live.display(), "restoring a partition whose snapshot install was interrupted");
        std::fs::rename(&old, live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_message(group: GroupId, index: u64) -> GroupMessage {
        let mut msg = Message::default();
        msg.set_msg_type(MessageType::MsgSnapshot);
        msg.from = 1;
        msg.to = 2;
        msg.mut_snapshot().mut_metadata().index = index;
        GroupMessage { group, msg }
    }

    #[tokio::test]
    async fn a_snapshot_streams_files_and_delivers_its_message() {
        let tmp = tempfile::tempdir().unwrap();
        let sender_dirs = SnapshotDirs::new(tmp.path().join("a")).unwrap();
        let receiver_dirs = SnapshotDirs::new(tmp.path().join("b")).unwrap();
        let dir = sender_dirs.send_dir(7, 42);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("000001.sst"), vec![7u8; 600_000]).unwrap();
        std::fs::write(dir.join("CURRENT"), b"MANIFEST-000002\n").unwrap();
        let files = SnapshotFiles {
            dir: dir.clone(),
            index: 42,
        };
        let (mut a, mut b) = tokio::io::duplex(64 << 10);
        let (tx, mut rx) = mpsc::channel(4);
        let stats = SnapshotStats::default();
        let m = snapshot_message(7, 42);
        let limiter = RateLimiter::new(0);
        let (sent, received) = tokio::join!(send(&mut a, &m, &files, &limiter), async {
            let mut kind = [0u8; 1];
            b.read_exact(&mut kind).await.unwrap();
            assert_eq!(kind[0], SNAPSHOT_STREAM);
            receive(&mut b, &receiver_dirs, &tx, &stats).await
        });
        assert_eq!(sent.unwrap(), 600_000 + 16);
        received.unwrap();
        let got = rx.recv().await.unwrap();
        assert_eq!(got.group, 7);
        assert_eq!(got.msg.get_snapshot().get_metadata().index, 42);
        let recv = receiver_dirs.recv_dir(7, 42);
        assert_eq!(
            std::fs::read(recv.join("CURRENT")).unwrap(),
            b"MANIFEST-000002\n"
        );
        assert_eq!(
            std::fs::read(recv.join("000001.sst")).unwrap().len(),
            600_000
        );
        assert_eq!(stats.received_bytes.load(Ordering::Relaxed), 600_016);
        drop(files);
        assert!(!dir.exists(), "the checkpoint goes with its last handle");
    }

    #[tokio::test]
    async fn a_truncated_or_hostile_stream_is_refused_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = SnapshotDirs::new(tmp.path().to_path_buf()).unwrap();
        let (tx, _rx) = mpsc::channel(4);
        let stats = SnapshotStats::default();
        let msg = snapshot_message(3, 9).msg.write_to_bytes().expect("encode");
        let mut head = Vec::new();
        head.extend_from_slice(&3u64.to_be_bytes());
        head.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        head.extend_from_slice(&msg);
        head.extend_from_slice(&1u32.to_be_bytes());
        // A path in a file name.
        let mut hostile = head.clone();
        hostile.extend_from_slice(&(9u16).to_be_bytes());
        hostile.extend_from_slice(b"../escape");
        hostile.extend_from_slice(&0u64.to_be_bytes());
        let mut input = &hostile[..];
        let mut io = tokio::io::join(&mut input, tokio::io::sink());
        let e = receive(&mut io, &dirs, &tx, &stats).await.unwrap_err();
        assert!(e.contains("bad file name"), "{e}");
        // A stream that ends inside a file.
        let mut truncated = head;
        truncated.extend_from_slice(&(3u16).to_be_bytes());
        truncated.extend_from_slice(b"sst");
        truncated.extend_from_slice(&100u64.to_be_bytes());
        truncated.extend_from_slice(&[0u8; 10]);
        let mut input = &truncated[..];
        let mut io = tokio::io::join(&mut input, tokio::io::sink());
        assert!(receive(&mut io, &dirs, &tx, &stats).await.is_err());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        assert_eq!(stats.received.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn swap_in_replaces_the_directory_and_recovery_finishes_an_interrupted_swap() {
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("default-0");
        let snap = tmp.path().join("recv-1-5");
        std::fs::create_dir_all(&live).unwrap();
        std::fs::write(live.join("f"), b"old").unwrap();
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("f"), b"new").unwrap();
        swap_in(&live, &snap).unwrap();
        assert_eq!(std::fs::read(live.join("f")).unwrap(), b"new");
        assert!(!snap.exists());
        assert!(!old_dir(&live).exists());

        // Crashed after moving the live directory aside: it comes back.
        std::fs::rename(&live, old_dir(&live)).unwrap();
        recover_swap(&live).unwrap();
        assert_eq!(std::fs::read(live.join("f")).unwrap(), b"new");
        // Crashed before deleting the old copy: it goes.
        std::fs::create_dir_all(old_dir(&live)).unwrap();
        recover_swap(&live).unwrap();
        assert!(!old_dir(&live).exists());
    }

    #[test]
    fn two_checkpoints_of_one_index_do_not_share_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = SnapshotDirs::new(tmp.path().to_path_buf()).unwrap();
        // A worker's clone and the node's hand out different directories too.
        let worker_dirs = dirs.clone();
        let make = |d: &SnapshotDirs| {
            let dir = d.send_dir(4, 11);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("CURRENT"), b"MANIFEST-000002\n").unwrap();
            SnapshotFiles { dir, index: 11 }
        };
        // One still being sent while raft asks for another at the same applied index.
        let sending = make(&dirs);
        let newer = make(&worker_dirs);
        assert_ne!(sending.dir, newer.dir);
        drop(sending);
        assert!(
            newer.dir.join("CURRENT").exists(),
            "dropping the older checkpoint took the newer one's files"
        );
        let dir = newer.dir.clone();
        drop(newer);
        assert!(!dir.exists());
    }

    #[test]
    fn start_up_cleaning_keeps_only_snapshots_still_to_install() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = SnapshotDirs::new(tmp.path().to_path_buf()).unwrap();
        for d in [
            dirs.send_dir(1, 10),
            dirs.partial_dir(1, 11),
            dirs.recv_dir(1, 5),
            dirs.recv_dir(1, 20),
            dirs.recv_dir(2, 20),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        // Group 1 applied 10; group 2 is not hosted any more.
        dirs.clean_at_start(&|g| (g == 1).then_some(10));
        let mut left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec!["recv-1-20"]);
    }
}
