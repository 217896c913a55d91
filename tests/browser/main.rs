//! The order page in a real browser: Debian's headless Chromium driven over WebDriver (chromedriver), against the
//! service over real connections (its own PostgreSQL database, nats-server, the in-process STAN broker), set up by
//! the same helpers as `tests/api`. Needs `chromium` and `chromium-driver` (`scripts/browser.sh` installs them);
//! without them these tests fail and say so.

// Shared with tests/api; this binary uses part of it.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod order_page;
mod webdriver;
