//! The order page in a real browser: Debian's headless Chromium driven over WebDriver (chromedriver), against the
//! service over real connections (its own PostgreSQL database, nats-server, the in-process STAN broker), set up by
//! the same support crate as `tests/api` (`tests/support`). Needs `chromium` and `chromium-driver`
//! (`scripts/browser.sh` installs them); without them these tests fail and say so.

mod order_page;
mod webdriver;
