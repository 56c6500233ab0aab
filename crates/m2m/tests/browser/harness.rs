//! A real browser for each test: Debian's chromium, headless, driven
//! through its chromedriver (one per test, on a free port) with the
//! fantoccini WebDriver client, against the app that m2m-testkit spawns.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a condition of the page may take to hold.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// Browsers running at once: each is a few processes and a few hundred MB;
/// the tests run in parallel threads on a small machine.
static BROWSERS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(2));

/// A chromedriver process, killed when dropped (a failed test included).
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether chromium and chromedriver are installed. When they are not, the
/// test is skipped with a printed reason, except in CI (`CI=true`), where
/// .ci/run installs them and their absence is a failure.
fn available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = format!(
        "{} not installed (apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the browser tests must run in CI: {reason}"
    );
    eprintln!("skipped: {reason}");
    false
}

async fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port };
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver
}

async fn connect(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--window-size=1280,900",
                "--lang=en-GB",
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session")
}

/// Runs `test` with a browser, then closes the browser, whether the test
/// passed or panicked (the panic is then raised again). Skips (returns)
/// when no browser is installed, outside CI.
pub(crate) async fn with_browser<F, Fut>(test: F)
where
    F: FnOnce(Page) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if !available() {
        return;
    }
    let _permit = BROWSERS.acquire().await.expect("the semaphore is open");
    let driver = start_driver().await;
    let client = connect(&driver).await;
    let outcome = tokio::spawn(test(Page(client.clone()))).await;
    let _ = client.close().await;
    drop(driver);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The browser's page, with the few actions and waits the tests use.
#[derive(Debug, Clone)]
pub(crate) struct Page(pub(crate) Client);

impl Page {
    pub(crate) async fn goto(&self, url: &str) {
        self.0.goto(url).await.expect("the page loads");
    }

    /// Evaluates `script` (a function body: `return …`) in the page.
    pub(crate) async fn eval(&self, script: &str) -> Value {
        self.0
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns a truthy value, and returns it; fails
    /// after [`WAIT`] with `what` and the page's text.
    pub(crate) async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.eval(script).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() >= deadline {
                let text = self.eval("return document.body.innerText").await;
                panic!(
                    "never: {what}\nthe page shows:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types into the field `css`.
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let field = self
            .0
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        field.clear().await.expect("the field clears");
        field.send_keys(text).await.expect("typing works");
    }

    pub(crate) async fn click(&self, css: &str) {
        self.0
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("{css} cannot be clicked: {e}"));
    }

    /// Opens the dashboard at `base` and logs in as `username`, waiting
    /// until the login form is gone.
    pub(crate) async fn log_in(&self, base: &str, username: &str) {
        self.goto(&format!("{base}/app/")).await;
        self.fill("#username", username).await;
        self.fill("#password", m2m_testkit::PASSWORD).await;
        self.click("#login button[type=submit]").await;
        self.wait_for(
            "the login form is replaced by a page",
            "return !document.getElementById('login') && !document.querySelector('main[aria-busy]')",
        )
        .await;
    }

    /// The `data-points` of the chart `css`, once it has one.
    pub(crate) async fn points(&self, css: &str) -> u64 {
        let v = self
            .wait_for(
                &format!("a chart {css}"),
                &format!(
                    "const c = document.querySelector({}); return c && c.querySelector('canvas') && c.dataset.points",
                    serde_json::to_string(css).expect("a string")
                ),
            )
            .await;
        v.as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("data-points of {css} is {v}"))
    }

    /// A PNG of the viewport.
    pub(crate) async fn screenshot(&self) -> Vec<u8> {
        self.0.screenshot().await.expect("a screenshot")
    }
}
