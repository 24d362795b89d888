//! The disk tier under faults no in-process test can cause: a file system
//! that fills up, and a node killed with SIGKILL while it writes. Both run
//! the real `quiver-server` binary; the small disk is a tmpfs mounted in a
//! user and mount namespace of the node's own (`unshare -Urm`), so no
//! privilege is needed beyond what CI has.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::*;

/// A node process; killed with SIGKILL when dropped.
struct Process {
    child: Child,
    flight: std::net::SocketAddr,
    admin: std::net::SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on `data` with its disk tier in `cache` (64 KiB chunks,
/// 8 MiB of memory, so that nearly everything goes to disk), under `wrap`
/// (a command line the binary's own is appended to) when given.
fn spawn(data: &Path, cache: &Path, disk: &str, wrap: &[&str], log: &Path) -> Process {
    let flight = quiver_testkit::free_addr().unwrap();
    let admin = quiver_testkit::free_addr().unwrap();
    let config = format!(
        "[server]\nlisten = \"{flight}\"\nadmin_listen = \"{admin}\"\n\n\
         [cache]\nmemory = \"8MiB\"\ndisk = \"{disk}\"\nchunk = \"64KiB\"\ndisk_dir = \"{}\"\n\n\
         [[source]]\nname = \"local\"\nurl = \"{}\"\nvalidate = \"10m\"\n",
        cache.display(),
        url::Url::from_directory_path(data).unwrap(),
    );
    let config_path = log.with_extension("toml");
    std::fs::write(&config_path, config).unwrap();
    let bin = env!("CARGO_BIN_EXE_quiver-server");
    let mut argv: Vec<String> = wrap.iter().map(|s| s.to_string()).collect();
    argv.extend([
        bin.to_string(),
        "--config".into(),
        config_path.display().to_string(),
    ]);
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .env("QUIVER_LOG", "warn")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut p = Process {
        child,
        flight,
        admin,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !quiver_testkit::node_ready(p.admin) {
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!(
                "the node exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

async fn connect(p: &Process) -> arrow_flight::FlightClient {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", p.flight))
        .unwrap()
        .connect()
        .await
        .unwrap();
    arrow_flight::FlightClient::new(channel)
}

async fn health(c: &mut arrow_flight::FlightClient) -> serde_json::Value {
    serde_json::from_slice(&action(c, "health", b"").await.unwrap()[0]).unwrap()
}

/// `files` generated objects in `dir/t/`, about 1.4 MB each.
fn lake(dir: &Path, files: u64) -> Vec<String> {
    (0..files)
        .map(|i| {
            let key = format!("t/p{i:02}.parquet");
            write_parquet(&dir.join(&key), 40_000, 100 + i);
            key
        })
        .collect()
}

/// Every object, filtered and projected, equals the oracle.
async fn answers_match(c: &mut arrow_flight::FlightClient, data: &Path, keys: &[String]) {
    let filter = "qty > 20 OR name LIKE 'b%'";
    let columns = vec!["id".to_string(), "name".to_string(), "amount".to_string()];
    for key in keys {
        let req = quiver_protocol::ScanRequest {
            filter: Some(filter.into()),
            columns: Some(columns.clone()),
            ..scan("local", key)
        };
        let got = do_get(c, &req)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e:?}"));
        let want = reference(&data.join(key), Some(&columns), Some(filter)).await;
        assert_eq!(rows(&got), rows(&want), "{key}");
    }
}

/// Runs a node whose `disk_dir` is a tmpfs of `mib` MiB in a namespace of
/// its own, after `then` (a shell command, `$0` being the directory) has
/// been started in the background there.
fn spawn_on_tmpfs(work: &Path, data: &Path, mib: u64, then: &str) -> Process {
    let cache = work.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let script = format!(
        "mount -t tmpfs -o size={mib}m quiver-disk \"$0\" || exit 97; ({then}) & exec \"$@\""
    );
    let cache_arg = cache.display().to_string();
    let wrap = [
        "unshare",
        "-Urm",
        "sh",
        "-c",
        script.as_str(),
        cache_arg.as_str(),
    ];
    spawn(data, &cache, "64MiB", &wrap, &work.join("node.log"))
}

fn node_log(work: &Path) -> String {
    std::fs::read_to_string(work.join("node.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_without_room_for_the_tier_runs_memory_only() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let keys = lake(&data, 6);
    // 16 MiB of disk for a 64 MiB tier.
    let node = spawn_on_tmpfs(work.path(), &data, 16, "true");
    let mut c = connect(&node).await;
    let h = health(&mut c).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["disk"]["state"], "degraded", "{h}");
    let problem = h["disk"]["problem"].as_str().unwrap_or_default();
    assert!(problem.contains("cannot be reserved"), "{problem}");
    answers_match(&mut c, &data, &keys).await;
    answers_match(&mut c, &data, &keys).await;
    let s = stats(&mut c).await;
    assert_eq!(s.disk.capacity, 0, "{s:?}");
    let log = node_log(work.path());
    assert!(log.contains("the disk tier is degraded"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_other_files_fill_does_not_fail_the_tier() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let keys = lake(&data, 24);
    let size: u64 = keys
        .iter()
        .map(|k| std::fs::metadata(data.join(k)).unwrap().len())
        .sum();
    assert!(size > 16 << 20, "the lake is only {size} bytes");
    // Room for the tier, which is reserved when it opens; then another file
    // takes every byte that is left.
    let filler = "sleep 1; dd if=/dev/zero of=\"$0/filler\" bs=1M 2>/dev/null; true";
    let node = spawn_on_tmpfs(work.path(), &data, 80, filler);
    let mut c = connect(&node).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    answers_match(&mut c, &data, &keys).await;
    let before = stats(&mut c).await;
    answers_match(&mut c, &data, &keys).await;
    let after = stats(&mut c).await;
    assert!(
        after.disk.hits > before.disk.hits,
        "the full file system stopped the disk tier: {after:?}"
    );
    let h = health(&mut c).await;
    assert_eq!(h["disk"]["state"], "ok", "{h}");
    let log = node_log(work.path());
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_heavy_disk_writes_restarts_with_right_answers() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let cache = work.path().join("cache");
    let keys = lake(&data, 16);
    for round in 0..3u64 {
        let log = work.path().join(format!("node-{round}.log"));
        let node = spawn(&data, &cache, "256MiB", &[], &log);
        // Misses in parallel keep the disk tier writing; the kill lands in
        // the middle of them.
        let mut tasks = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let mut c = connect(&node).await;
            let req = quiver_protocol::ScanRequest {
                columns: Some(vec![COLUMNS[i % COLUMNS.len()].to_string()]),
                ..scan("local", key)
            };
            tasks.push(tokio::spawn(async move {
                do_get(&mut c, &req).await.map(|_| ())
            }));
        }
        tokio::time::sleep(Duration::from_millis(300 + 200 * round)).await;
        drop(node);
        for t in tasks {
            let _ = t.await;
        }
        // The restarted node recovers whatever the kill left, and every
        // answer is right.
        let node = spawn(&data, &cache, "256MiB", &[], &log.with_extension("after"));
        let mut c = connect(&node).await;
        answers_match(&mut c, &data, &keys).await;
        let s = stats(&mut c).await;
        eprintln!("round {round}: disk hits {} after the restart", s.disk.hits);
    }
}
