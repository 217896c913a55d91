//! Just enough of the W3C WebDriver protocol to drive Debian's headless Chromium through chromedriver: start
//! chromedriver on a free port in its own process group (killed, browser and all, on `Drop`), open a session,
//! navigate, find, type, click, run scripts, take screenshots.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use order_service_test_support::free_port;
use serde_json::{json, Value};
use uuid::Uuid;

/// The key WebDriver sends for Enter.
pub const ENTER: &str = "\u{E007}";
/// How long a wait for the page lasts before the test fails.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);

const CHROMEDRIVER: &str = "chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process with one browser session.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`
    session: String,
    driver: Driver,
}

/// The chromedriver process group and the browser's profile directory, both removed on drop.
struct Driver {
    child: Child,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver leads its own process group, and the browser it started is in it: one signal ends both,
        // even when the test failed before `quit`.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of the given size.
    pub async fn start(width: u32, height: u32) -> anyhow::Result<Browser> {
        let port = free_port()?;
        let profile = std::env::temp_dir().join(format!("order-page-browser-{}", Uuid::new_v4()));
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|error| {
                anyhow::anyhow!(
                    "Failed to start {CHROMEDRIVER} ({error}). The browser tests need Debian's chromium and \
                     chromium-driver: run scripts/browser.sh (apt-get install chromium chromium-driver)."
                )
            })?;
        let driver = Driver { child, profile };
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");

        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(response) => response
                    .json::<Value>()
                    .await
                    .is_ok_and(|status| status["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready on port {port} within {PAGE_WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new",
                        // Root in a container has no user namespaces for the sandbox.
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--disable-extensions",
                        "--no-first-run",
                        "--hide-scrollbars",
                        format!("--user-data-dir={}", driver.profile.display()),
                        format!("--window-size={width},{height}"),
                    ]
                }
            }}
        });
        let answer = command(
            &http,
            reqwest::Method::POST,
            &format!("{base}/session"),
            Some(capabilities),
        )
        .await
        .context("Failed to start a Chromium session")?;
        let id = answer["sessionId"]
            .as_str()
            .context("chromedriver answered no sessionId")?;
        Ok(Browser {
            http,
            session: format!("{base}/session/{id}"),
            driver,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        command(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .with_context(|| format!("Failed to open {url}"))?;
        Ok(())
    }

    pub async fn current_url(&self) -> anyhow::Result<String> {
        let url = self.call(reqwest::Method::GET, "/url", None).await?;
        url.as_str()
            .map(str::to_owned)
            .context("the URL is not a string")
    }

    pub async fn refresh(&self) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/refresh", Some(json!({})))
            .await?;
        Ok(())
    }

    pub async fn back(&self) -> anyhow::Result<()> {
        self.call(reqwest::Method::POST, "/back", Some(json!({})))
            .await?;
        Ok(())
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, selector: &str) -> anyhow::Result<Element<'_>> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": selector })),
            )
            .await
            .with_context(|| format!("No element matches {selector:?}"))?;
        let id = found[ELEMENT_KEY]
            .as_str()
            .context("chromedriver answered no element reference")?;
        Ok(Element {
            browser: self,
            id: id.to_owned(),
        })
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns its value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
        .with_context(|| format!("Failed to run {script:?}"))
    }

    /// Waits until `script` returns something other than `null`, `false` or `""`, and returns that.
    pub async fn wait_for(&self, what: &str, script: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let value = self.execute(script, vec![]).await?;
            if !(value.is_null() || value == false || value == "") {
                return Ok(value);
            }
            if Instant::now() > deadline {
                bail!("timed out after {PAGE_WAIT:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The page as a PNG.
    pub async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        let encoded = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let encoded = encoded.as_str().context("the screenshot is not a string")?;
        Ok(base64::engine::general_purpose::STANDARD.decode(encoded)?)
    }

    /// Closes the browser; dropping `Browser` then ends chromedriver.
    pub async fn quit(self) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, "", None).await?;
        drop(self.driver);
        Ok(())
    }
}

/// An element found in the page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    /// Types into the element, as a person would (key events, so Enter submits the form).
    pub async fn send_keys(&self, text: &str) -> anyhow::Result<()> {
        self.browser
            .call(
                reqwest::Method::POST,
                &format!("/element/{}/value", self.id),
                Some(json!({ "text": text })),
            )
            .await?;
        Ok(())
    }

    pub async fn clear(&self) -> anyhow::Result<()> {
        self.browser
            .call(
                reqwest::Method::POST,
                &format!("/element/{}/clear", self.id),
                Some(json!({})),
            )
            .await?;
        Ok(())
    }

    pub async fn click(&self) -> anyhow::Result<()> {
        self.browser
            .call(
                reqwest::Method::POST,
                &format!("/element/{}/click", self.id),
                Some(json!({})),
            )
            .await?;
        Ok(())
    }
}

/// One WebDriver command: the `value` of a success, or the error chromedriver reported.
async fn command(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut request = http.request(method, url).timeout(Duration::from_secs(60));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let mut answer: Value = response.json().await?;
    let value = answer["value"].take();
    if !status.is_success() {
        bail!(
            "WebDriver error {status}: {} ({})",
            value["error"].as_str().unwrap_or("unknown"),
            value["message"].as_str().unwrap_or_default()
        );
    }
    Ok(value)
}
