//! A real Prometheus for the dashboard and alert tests: Debian's `prometheus` and `promtool` binaries
//! (`scripts/prometheus.sh` installs them), a server of the test's own on a free loopback port with its storage in
//! a temp dir, and its HTTP query API.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use order_service_test_support::{eventually, free_port, WAIT};
use serde_json::Value;
use tempfile::TempDir;

use crate::fault_harness::temp_dir;

/// How often the test's Prometheus scrapes: short, so a test waits seconds for the samples a rate needs.
pub const SCRAPE_INTERVAL: &str = "1s";

/// The path of `name` (`prometheus`, `promtool`), or an error that says how to install it: a missing tool fails
/// the test, it never skips it.
pub fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "`{name}` is not installed: run scripts/prometheus.sh (Debian's `prometheus` package, which also \
                 brings promtool); scripts/test.sh does this before the tests"
            )
        })
}

/// Runs `promtool` with `args` in `dir`; returns its output, or an error with that output when it fails.
pub fn promtool(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(tool("promtool")?)
        .args(args)
        .current_dir(dir)
        .output()
        .context("Failed to run promtool")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    anyhow::ensure!(
        output.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        output.status
    );
    Ok(text)
}

/// A Prometheus server scraping one target. It runs under a shell that kills it when our end of the shell's stdin
/// closes (on drop, or when the test process dies), so it never outlives the tests.
pub struct Prometheus {
    pub url: String,
    client: reqwest::Client,
    dir: TempDir,
    wrapper: Child,
    lifeline: Option<ChildStdin>,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`, path `/metrics`) and waits until it is ready.
    /// `bearer_token`: the admin listener's `ADMIN_TOKEN`, sent with every scrape as production does.
    pub async fn scraping(target: &str, bearer_token: &str) -> anyhow::Result<Prometheus> {
        let binary = tool("prometheus")?;
        let dir = temp_dir("prometheus")?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        let config = dir.path().join("prometheus.yml");
        let token_file = dir.path().join("admin_token");
        std::fs::write(&token_file, bearer_token)?;
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\n\
                 scrape_configs:\n  - job_name: order-service\n    authorization:\n      type: Bearer\n\
                 \x20     credentials_file: {}\n    static_configs:\n      - targets: [\"{target}\"]\n",
                token_file.display()
            ),
        )?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        // The server in the background and a reader of the shell's stdin (kept on fd 3: a background job's own
        // stdin is /dev/null) that kills it at EOF; the shell exits when the server does.
        let script = r#"exec 3<&0; "$0" "$@" </dev/null & server=$!; (read -r _ <&3; kill "$server" 2>/dev/null) & wait "$server""#;
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("Failed to start {}", binary.display()))?;
        let lifeline = wrapper.stdin.take().context("no stdin pipe")?;
        let mut prometheus = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            dir,
            wrapper,
            lifeline: Some(lifeline),
        };
        prometheus.wait_until_ready().await?;
        Ok(prometheus)
    }

    /// Polls `/-/ready` until it answers 200; fails with Prometheus' log when it exits or the wait runs out.
    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let ready = format!("{}/-/ready", self.url);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.wrapper.try_wait()? {
                anyhow::bail!("Prometheus exited ({status}); its log:\n{}", self.log());
            }
            if let Ok(response) = self.client.get(&ready).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "Prometheus was not ready after {WAIT:?}; its log:\n{}",
                self.log()
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What Prometheus wrote to stderr so far (its log), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Runs an instant query through `/api/v1/query`; returns `data.result` (a vector's samples).
    pub async fn query(&self, expr: &str) -> anyhow::Result<Vec<Value>> {
        let response = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .with_context(|| format!("Failed to query Prometheus at {}", self.url))?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(
            status.is_success() && body["status"] == "success",
            "Prometheus refused {expr:?} ({status}): {body}"
        );
        let result = &body["data"]["result"];
        Ok(match body["data"]["resultType"].as_str() {
            Some("vector" | "matrix") => result.as_array().cloned().unwrap_or_default(),
            // A scalar or string answers with one [time, value] pair.
            _ if result.is_null() => Vec::new(),
            _ => vec![result.clone()],
        })
    }

    /// The single value of an instant query that yields one sample (e.g. `count_over_time(up[10m])`), if any.
    pub async fn value(&self, expr: &str) -> anyhow::Result<Option<f64>> {
        let result = self.query(expr).await?;
        Ok(result
            .first()
            .and_then(|sample| sample["value"][1].as_str())
            .and_then(|value| value.parse().ok()))
    }

    /// How many scrapes of the target Prometheus has stored (`up` has one sample per scrape).
    pub async fn scrapes(&self) -> anyhow::Result<f64> {
        Ok(self
            .value("sum(count_over_time(up{job=\"order-service\"}[1h]))")
            .await?
            .unwrap_or(0.0))
    }

    /// Waits until Prometheus has scraped the target successfully `more` times after now.
    pub async fn wait_for_scrapes(&self, more: f64) -> anyhow::Result<()> {
        let before = self.scrapes().await?;
        eventually(WAIT, &format!("{more} more scrapes"), || async {
            let up = self.value("min(up{job=\"order-service\"})").await?;
            anyhow::ensure!(
                up != Some(0.0),
                "Prometheus cannot scrape the service; its targets: {}",
                self.targets().await.unwrap_or_default()
            );
            Ok((self.scrapes().await? >= before + more).then_some(()))
        })
        .await
    }

    async fn targets(&self) -> anyhow::Result<String> {
        Ok(self
            .client
            .get(format!("{}/api/v1/targets", self.url))
            .send()
            .await?
            .text()
            .await?)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut lifeline) = self.lifeline.take() {
            let _ = lifeline.write_all(b"stop\n");
        }
        let _ = self.wrapper.wait();
    }
}
