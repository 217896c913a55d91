//! What the fault and binary tests need besides the usual helpers: the service as a child process (to SIGKILL or
//! SIGTERM it), a private
//! PostgreSQL cluster and a private nats-server (to stop and start them without touching the shared ones), a
//! corpus of mixed messages, and the check that every message is accounted for exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use order_service::config::Settings;
use order_service::domain::generator;
use order_service::storage::Pool;
use order_service_test_support::metrics::{scrape_at, Sample};
use order_service_test_support::{admin_token, count, eventually, free_port, uid_of, WAIT};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::Value;
use tempfile::{NamedTempFile, TempDir};

const BINARY: &str = env!("CARGO_BIN_EXE_order-service");

/// A directory under the temp dir, named after `what`, removed on drop.
pub fn temp_dir(what: &str) -> anyhow::Result<TempDir> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("order-service-{what}-"))
        .tempdir()?)
}

/// A file under the temp dir, named after `what`, removed on drop.
pub fn temp_file(what: &str) -> anyhow::Result<NamedTempFile> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("order-service-{what}-"))
        .tempfile()?)
}

/// Waits for `child` to exit, at most `WAIT`.
pub async fn wait_for_exit(child: &mut Child) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the process did not exit within {WAIT:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `command`, failing with its output if it fails.
fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("Failed to run {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// The `order-service` binary as a child process, killed (SIGKILL) on drop.
pub struct ServiceProcess {
    child: Child,
    pub address: String,
    pub admin_address: String,
    /// The token its admin listener wants (empty when it has none).
    pub admin_token: String,
    log: NamedTempFile,
}

impl ServiceProcess {
    /// Starts the binary with the test's settings on free ports.
    pub fn spawn(settings: &Settings) -> anyhow::Result<ServiceProcess> {
        ServiceProcess::spawn_with(settings, &[])
    }

    /// Like `spawn`, with more environment variables.
    pub fn spawn_with(
        settings: &Settings,
        env: &[(&str, String)],
    ) -> anyhow::Result<ServiceProcess> {
        let (port, admin_port, log) = (free_port()?, free_port()?, temp_file("log")?);
        let admin_token = admin_token(settings);
        let sources: Vec<&str> = settings.sources.iter().map(|s| s.as_str()).collect();
        let js = &settings.jetstream;
        let child = Command::new(BINARY)
            // The service's own default log filter, unless the test passes one.
            .env_remove("RUST_LOG")
            .env("ADMIN_ADDR", format!("127.0.0.1:{admin_port}"))
            .env("ADMIN_TOKEN", &admin_token)
            .env("SOURCE", sources.join(","))
            .env("NATS_URL", js.url.expose())
            .env("JS_STREAM", &js.stream)
            .env("JS_SUBJECT", &js.subject)
            .env("JS_CONSUMER", &js.consumer)
            .env("JS_INFO_INTERVAL", "1")
            .env("JS_TIMEOUT", "2")
            .env("DATABASE_URL", settings.database.url.expose())
            .env("STAN_URL", settings.stan.url.expose())
            .env("STAN_CLUSTER_ID", &settings.stan.cluster_id)
            .env("STAN_CHANNEL", &settings.stan.channel)
            .env("STAN_CLIENT_ID", &settings.stan.client_id)
            .env("STAN_ACK_WAIT", "1")
            .env("STAN_PROBE_INTERVAL", "1")
            .env("STAN_TIMEOUT", "2")
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("HTTP_WORKERS", "2")
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()?;
        Ok(ServiceProcess {
            child,
            address: format!("http://127.0.0.1:{port}"),
            admin_address: format!("http://127.0.0.1:{admin_port}"),
            admin_token,
            log,
        })
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.address);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "the service exited with {status}; its log:\n{}",
                    self.log_tail()
                );
            }
            if matches!(reqwest::get(&url).await, Ok(response) if response.status() == 200) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the service was not ready within {WAIT:?}; its log:\n{}",
                self.log_tail()
            );
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until this process serves the order `uid`.
    pub async fn served(&self, uid: &str) -> anyhow::Result<()> {
        let url = format!("{}/order/{uid}", self.address);
        eventually(WAIT, &format!("{url} to be served"), || async {
            let response = reqwest::get(&url).await?;
            Ok((response.status() == 200).then_some(()))
        })
        .await
    }

    /// The metrics its admin listener serves.
    pub async fn metrics(&self) -> anyhow::Result<Vec<Sample>> {
        scrape_at(&self.admin_address, &self.admin_token).await
    }

    /// `GET` on its admin listener, with its admin token.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(reqwest::Client::new()
            .get(format!("{}{path}", self.admin_address))
            .bearer_auth(&self.admin_token)
            .send()
            .await?)
    }

    /// A line of the process's `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
    pub fn memory(&self, field: &str) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .with_context(|| format!("no {field} in /proc/<pid>/status"))?
            .trim()
            .parse()?;
        Ok(kib * 1024)
    }

    /// SIGKILL, as the kernel's OOM killer or a power cut would: no drain, no close.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, as an orchestrator stops a service; answers the exit status and the whole log.
    pub async fn terminate(mut self) -> anyhow::Result<(ExitStatus, String)> {
        self.signal(Signal::SIGTERM)?;
        self.exit().await
    }

    /// SIGSTOP: the process stalls (answers nothing, not even the broker's heartbeats) until `resume`.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal(Signal::SIGCONT)
    }

    /// Waits for the process to exit on its own; answers the exit status and the whole log.
    pub async fn exit(&mut self) -> anyhow::Result<(ExitStatus, String)> {
        let status = wait_for_exit(&mut self.child).await?;
        Ok((status, std::fs::read_to_string(self.log.path())?))
    }

    /// The whole log so far.
    pub fn log(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.log.path())?)
    }

    fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.child.id())?);
        kill(pid, signal).with_context(|| format!("Failed to send {signal} to the service"))
    }

    /// The end of the service's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL cluster of the test's own (initdb under a temp dir, a free port), so it can be stopped and started
/// without touching the shared one. Stopped and removed on drop.
pub struct ThrowawayPostgres {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    /// More `postgres -c` options (TLS).
    options: String,
    /// initdb and postgres refuse to run as root: as root, they run as the `postgres` user.
    as_postgres: bool,
}

impl ThrowawayPostgres {
    /// Creates the cluster and starts it.
    pub fn start() -> anyhow::Result<ThrowawayPostgres> {
        ThrowawayPostgres::start_with(|_| Ok(String::new()))
    }

    /// Creates the cluster with TLS on (`ssl=on`): the server's certificate and key come from `certificates`, which
    /// gets the cluster's directory to write them in (readable by the cluster's user) and answers their paths.
    pub fn start_with_tls(
        certificates: impl FnOnce(&Path) -> anyhow::Result<(PathBuf, PathBuf)>,
    ) -> anyhow::Result<ThrowawayPostgres> {
        ThrowawayPostgres::start_with(|dir| {
            let (certificate, key) = certificates(dir)?;
            Ok(format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                certificate.display(),
                key.display()
            ))
        })
    }

    fn start_with(
        options: impl FnOnce(&Path) -> anyhow::Result<String>,
    ) -> anyhow::Result<ThrowawayPostgres> {
        let bin = postgres_bin_dir()?;
        let dir = temp_dir("pg")?;
        let as_postgres = running_as_root()?;
        let options = options(dir.path())?;
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))?;
        }
        let cluster = ThrowawayPostgres {
            bin,
            dir,
            port: free_port()?,
            options,
            as_postgres,
        };
        cluster.run_tool(
            "initdb",
            &[
                "-D",
                &cluster.data_dir(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        cluster.resume()?;
        Ok(cluster)
    }

    /// A primary whose commits wait until its standby named `SYNCHRONOUS_STANDBY` has flushed them (see
    /// `standby_of`). Until that standby streams, every commit waits.
    pub fn start_primary() -> anyhow::Result<ThrowawayPostgres> {
        ThrowawayPostgres::start_with(|_| {
            Ok(format!(
                " -c synchronous_standby_names={SYNCHRONOUS_STANDBY}"
            ))
        })
    }

    /// A synchronous standby of `primary`: a base backup of it (`pg_basebackup -R`, which writes the connection
    /// back to the primary and `standby.signal`), started on a port of its own and streaming under the name the
    /// primary waits for. It starts without `synchronous_standby_names`, so once promoted it commits alone.
    pub fn standby_of(primary: &ThrowawayPostgres) -> anyhow::Result<ThrowawayPostgres> {
        let dir = temp_dir("pg-standby")?;
        if primary.as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))?;
        }
        let standby = ThrowawayPostgres {
            bin: primary.bin.clone(),
            dir,
            port: free_port()?,
            options: String::new(),
            as_postgres: primary.as_postgres,
        };
        let primary_port = primary.port.to_string();
        standby.run_tool(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port,
                "-U",
                "postgres",
                "-D",
                &standby.data_dir(),
                "-R",
                "--no-sync",
            ],
        )?;
        // The later line wins: the same connection, named as the primary's synchronous_standby_names expects.
        let mut auto_conf = std::fs::OpenOptions::new()
            .append(true)
            .open(Path::new(&standby.data_dir()).join("postgresql.auto.conf"))?;
        writeln!(
            auto_conf,
            "primary_conninfo = 'host=127.0.0.1 port={primary_port} user=postgres \
             application_name={SYNCHRONOUS_STANDBY}'"
        )?;
        standby.resume()?;
        Ok(standby)
    }

    /// Promotes the standby to a primary and waits until it accepts writes.
    pub fn promote(&self) -> anyhow::Result<()> {
        self.run_tool(
            "pg_ctl",
            &["-D", &self.data_dir(), "-w", "-t", "30", "promote"],
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of `database` on this cluster, as the superuser.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the stopped cluster on the same port and data.
    pub fn resume(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off{}",
            self.port,
            self.dir.path().display(),
            self.options
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run_tool(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
    }

    /// Stops at once, as a crash would (`immediate`: no checkpoint, clients cut off mid-transaction).
    pub fn crash(&self) -> anyhow::Result<()> {
        self.run_tool(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"],
        )
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run_tool(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin.join(tool);
        if self.as_postgres {
            run(Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(program)
                .args(args))
        } else {
            run(Command::new(program).args(args))
        }
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        // Before `dir` goes: a running cluster would keep writing into it.
        let _ = self.crash();
    }
}

/// The `application_name` of `ThrowawayPostgres::standby_of`'s standby, which its primary waits for.
const SYNCHRONOUS_STANDBY: &str = "standby";

/// The newest `/usr/lib/postgresql/<version>/bin` (Debian's layout), or `$PG_BIN`.
fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("No /usr/lib/postgresql: install PostgreSQL or set PG_BIN")?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("No initdb under /usr/lib/postgresql/*/bin")
}

fn running_as_root() -> anyhow::Result<bool> {
    let output = Command::new("id").arg("-u").output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// A nats-server of the test's own on a fixed free port, with JetStream on a store directory of its own, so it can
/// be killed and started again at the same address on the same store. Runs under a shell that kills it when our
/// end of its stdin closes, so it never outlives the tests.
pub struct PrivateNats {
    port: u16,
    /// A configuration file for nats-server (authorization, TLS), if any.
    config: Option<NamedTempFile>,
    store: TempDir,
    running: Option<(Child, ChildStdin)>,
}

impl PrivateNats {
    pub async fn start() -> anyhow::Result<PrivateNats> {
        let mut nats = PrivateNats {
            port: free_port()?,
            config: None,
            store: temp_dir("nats-store")?,
            running: None,
        };
        nats.resume().await?;
        Ok(nats)
    }

    /// A server with this configuration (nats-server's format: `authorization { ... }`, `tls { ... }`).
    pub async fn start_with_config(config: &str) -> anyhow::Result<PrivateNats> {
        let file = temp_file("nats.conf")?;
        std::fs::write(file.path(), config)?;
        let mut nats = PrivateNats {
            port: free_port()?,
            config: Some(file),
            store: temp_dir("nats-store")?,
            running: None,
        };
        nats.resume().await?;
        Ok(nats)
    }

    /// `127.0.0.1:<port>`.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it greets.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let binary = ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"]
            .into_iter()
            .find(|path| Path::new(path).is_file())
            .unwrap_or("nats-server");
        let script = r#"binary="$0"; port="$1"; store="$2"; shift 2; "$binary" "$@" -a 127.0.0.1 -p "$port" -js -sd "$store" & server=$!; read -r _; kill -9 "$server""#;
        let config: Vec<String> = match &self.config {
            Some(file) => vec!["-c".into(), file.path().display().to_string()],
            None => Vec::new(),
        };
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(binary)
            .arg(self.port.to_string())
            .arg(self.store.path())
            .args(&config)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let lifeline = wrapper.stdin.take().context("no stdin pipe")?;
        self.running = Some((wrapper, lifeline));
        let addr = format!("127.0.0.1:{}", self.port);
        eventually(WAIT, "nats-server to greet", || async {
            Ok(greets_like_nats(&addr).then_some(()))
        })
        .await
    }

    /// Kills the server (SIGKILL) and waits until it no longer accepts connections.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some((mut wrapper, mut lifeline)) = self.running.take() {
            let _ = lifeline.write_all(b"stop\n");
            drop(lifeline);
            wrapper.wait()?;
        }
        let addr = format!("127.0.0.1:{}", self.port);
        eventually(WAIT, "nats-server to stop", || async {
            Ok((!greets_like_nats(&addr)).then_some(()))
        })
        .await
    }
}

fn greets_like_nats(addr: &str) -> bool {
    let Ok(stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}

/// Messages to publish, and what they must become.
#[derive(Default)]
pub struct Corpus {
    pub messages: Vec<Vec<u8>>,
    /// Distinct order_uids of the valid orders: the rows `orders` must end with.
    pub valid_uids: BTreeSet<String>,
    /// Invalid messages: each publication is one dead letter (its own sequence), not a conflict.
    pub invalid: Vec<Vec<u8>>,
    /// Per order_uid with two versions, both versions: one is stored, the other is a `conflict` dead letter
    /// (which one depends on the order they are processed in).
    pub conflicts: BTreeMap<String, [Vec<u8>; 2]>,
}

impl Corpus {
    /// `valid` new orders, `invalid` malformed messages, `duplicates` re-publications of valid orders (no new row)
    /// and `conflicts` other versions of valid orders (one dead letter each), shuffled.
    pub fn new(
        seed: u64,
        valid: usize,
        invalid: usize,
        duplicates: usize,
        conflicts: usize,
    ) -> anyhow::Result<Corpus> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut corpus = Corpus::default();
        let originals: Vec<Vec<u8>> = (0..valid)
            .map(|_| generator::valid_order_json(&mut rng))
            .collect();
        for original in &originals {
            corpus.valid_uids.insert(uid_of(original)?);
        }
        for original in originals.iter().take(duplicates) {
            corpus.messages.push(original.clone());
        }
        for original in originals.iter().rev().take(conflicts) {
            let mut other: Value = serde_json::from_slice(original)?;
            other["delivery"]["city"] = "Somewhere else".into();
            let other = serde_json::to_vec(&other)?;
            corpus.messages.push(other.clone());
            corpus
                .conflicts
                .insert(uid_of(original)?, [original.clone(), other]);
        }
        corpus.invalid = (0..invalid)
            .map(|_| generator::invalid_message(&mut rng).1)
            .collect();
        corpus.messages.extend(originals);
        corpus.messages.extend(corpus.invalid.iter().cloned());
        corpus.messages.shuffle(&mut rng);
        anyhow::ensure!(
            corpus.valid_uids.len() == valid,
            "the generator repeated an order_uid"
        );
        Ok(corpus)
    }

    /// Rows `orders` and `rejected_messages` must end with.
    pub fn expected_rows(&self) -> (i64, i64) {
        (
            self.valid_uids.len() as i64,
            (self.invalid.len() + self.conflicts.len()) as i64,
        )
    }

    /// Adds another corpus (published separately) to what must be found.
    pub fn extend(&mut self, other: &Corpus) {
        self.messages.extend(other.messages.iter().cloned());
        self.valid_uids.extend(other.valid_uids.iter().cloned());
        self.invalid.extend(other.invalid.iter().cloned());
        self.conflicts.extend(other.conflicts.clone());
    }
}

/// Rows in `orders` plus rows in `rejected_messages`.
pub async fn stored_rows(pool: &Pool) -> anyhow::Result<i64> {
    Ok(count(pool, "orders").await? + count(pool, "rejected_messages").await?)
}

/// Waits until `orders` and `rejected_messages` together hold more than `rows` rows: the moment a test injects its
/// fault mid-ingest.
pub async fn wait_for_stored_rows(pool: &Pool, rows: i64) -> anyhow::Result<()> {
    eventually(
        WAIT,
        &format!("more than {rows} rows to be stored"),
        || async { Ok((stored_rows(pool).await? > rows).then_some(())) },
    )
    .await
}

/// How long counts must stay put once reached: two ack waits, so a redelivery would have shown.
const SETTLE: Duration = Duration::from_millis(2500);

/// Waits until every message of `corpus` is accounted for, then asserts it exactly: the valid orders are the rows
/// of `orders`, each invalid publication and each conflict is one dead letter, nothing else arrives, no message is
/// stored twice, and the service at `address` serves every stored order byte for byte as stored.
pub async fn assert_accounted_for(
    pool: &Pool,
    address: &str,
    corpus: &Corpus,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (orders, rejected) = corpus.expected_rows();
    let counts = || async {
        Ok::<_, anyhow::Error>((
            count(pool, "orders").await?,
            count(pool, "rejected_messages").await?,
        ))
    };
    eventually(
        timeout,
        &format!("{orders} orders and {rejected} dead letters"),
        || async {
            let (o, r) = counts().await?;
            anyhow::ensure!(
                o <= orders && r <= rejected,
                "too many rows: {o} orders, {r} dead letters"
            );
            Ok((o == orders && r == rejected).then_some(()))
        },
    )
    .await?;
    let settled = Instant::now() + SETTLE;
    while Instant::now() < settled {
        assert_eq!(
            counts().await?,
            (orders, rejected),
            "rows arrived after all were accounted for"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }

    let conn = pool.get().await?;
    let stored: BTreeMap<String, String> = conn
        .query("SELECT order_uid, document::text FROM orders", &[])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(
        stored.keys().eq(corpus.valid_uids.iter()),
        "the stored order_uids are not the published ones"
    );

    let mut invalid_stored: Vec<Vec<u8>> = Vec::new();
    let mut conflicts_stored: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for row in conn
        .query(
            "SELECT reason_class, order_uid, payload FROM rejected_messages",
            &[],
        )
        .await?
    {
        let (class, uid, payload): (String, Option<String>, Vec<u8>) =
            (row.get(0), row.get(1), row.get(2));
        if class == "conflict" {
            let uid = uid.context("a conflict without order_uid")?;
            let versions = corpus
                .conflicts
                .get(&uid)
                .with_context(|| format!("an unexpected conflict for {uid}"))?;
            assert!(
                versions.contains(&payload),
                "conflict {uid}: the payload is neither version"
            );
            assert!(
                conflicts_stored.insert(uid.clone(), payload).is_none(),
                "two conflict dead letters for {uid}"
            );
        } else {
            invalid_stored.push(payload);
        }
    }
    let mut invalid_published = corpus.invalid.clone();
    invalid_published.sort();
    invalid_stored.sort();
    assert!(
        invalid_stored == invalid_published,
        "the dead letters are not the invalid messages published ({} stored, {} published)",
        invalid_stored.len(),
        invalid_published.len()
    );
    assert_eq!(conflicts_stored.len(), corpus.conflicts.len());

    // The cache equals the table.
    assert_serves_every_stored_order(pool, address).await
}

/// The service at `address` serves every order of the table, byte for byte as stored.
pub async fn assert_serves_every_stored_order(pool: &Pool, address: &str) -> anyhow::Result<()> {
    let conn = pool.get().await?;
    let stored: Vec<(String, String)> = conn
        .query("SELECT order_uid, document::text FROM orders", &[])
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let client = reqwest::Client::new();
    for (uid, document) in &stored {
        let response = client.get(format!("{address}/order/{uid}")).send().await?;
        assert_eq!(
            response.status(),
            200,
            "order {uid} is not served by {address}"
        );
        assert!(
            response.bytes().await? == document.as_bytes(),
            "order {uid} is served by {address} with other bytes than stored"
        );
    }
    Ok(())
}
