//! The operator's console in a real browser: Debian's chromium driven over WebDriver
//! (chromedriver) against the real orchestrator binary on the real broker, with `API_TOKEN`
//! set. The test plays the participants (`ParticipantDouble`) so that it can make a saga get
//! stuck and another wait mid-flight. It signs in once, sees an order placed over HTTP appear
//! and complete without a reload, opens its timeline, retries a stuck saga and cancels a
//! running one from their pages, and fails on any JavaScript error the pages log.
//!
//! Screenshots go to `target/console/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use sagaflow_events::{Participant, Phase};
use sagaflow_tests::bus::{Answer, TestBus};
use sagaflow_tests::procs::Program;
use sagaflow_tests::system::order_json;
use sagaflow_tests::{amqp_url, unique_namespace, wait};
use serde_json::{json, Value};

const TOKEN: &str = "console-test-token";

/// chromedriver on a port of its own; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is not installed: `make test` installs Debian's chromium-driver");
        let port = sagaflow_devkit::broker::free_port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        Self { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// ChromeDriver's log endpoint (`POST /session/{id}/se/log`): what the page wrote to its
/// console, uncaught exceptions included.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({ "type": "browser" }).to_string()))
    }
}

/// The JavaScript errors logged since the last call (reading the log empties it). A resource
/// that answered an error status (the sign-in page's 401) is the network's, not a script's.
async fn script_errors(browser: &Client) -> Vec<String> {
    let log = browser.issue_cmd(BrowserLog).await.expect("the browser log");
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .filter_map(|e| e["message"].as_str())
        .filter(|m| !m.contains("Failed to load resource"))
        .map(str::to_owned)
        .collect()
}

async fn assert_no_script_errors(browser: &Client, page: &str) {
    let errors = script_errors(browser).await;
    assert!(errors.is_empty(), "{page} logged JavaScript errors: {errors:#?}");
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Waits until `css` matches, polling the live page (never reloading it).
async fn appears(browser: &Client, css: &str, within: Duration) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(within)
        .every(Duration::from_millis(100))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear within {within:?}: {e}"))
}

/// Marks the page, so that a later check can tell it was never reloaded.
async fn mark(browser: &Client) {
    browser.execute("window.__sagaflowMark = 42; return null;", vec![]).await.unwrap();
}

async fn assert_not_reloaded(browser: &Client) {
    let mark = browser.execute("return window.__sagaflowMark || null;", vec![]).await.unwrap();
    assert_eq!(mark, json!(42), "the page was reloaded: the update must come live");
}

/// Clicks `css`, then accepts the confirmation it asks for.
async fn click_and_confirm(browser: &Client, css: &str) {
    appears(browser, css, Duration::from_secs(10)).await.click().await.expect("click");
    wait::until("the confirmation", Duration::from_secs(5), || async { browser.accept_alert().await.ok() })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_sagas_live_and_acts_on_them_in_a_real_browser() {
    let namespace = unique_namespace("console");
    let url = amqp_url();
    let bus = TestBus::connect(&url, &namespace).await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("API_TOKEN", TOKEN),
        ("ATTEMPT_TIMEOUT_MS", "30000"),
        ("ACTION_ATTEMPTS", "3"),
        ("COMPENSATION_ATTEMPTS", "3"),
        ("BACKOFF_INITIAL_MS", "50"),
        ("BACKOFF_MAX_MS", "200"),
    ];
    let orchestrator =
        Program::start("orchestrator", &namespace, &url, dir.path().join("orchestrator"), &env);
    orchestrator.wait_healthy(Duration::from_secs(30)).await;
    let api = orchestrator.http.clone();

    // Refunds fail until the operator has fixed them; "cancel-1" waits on inventory for ever.
    let refunds_work = Arc::new(AtomicBool::new(false));
    let flag = refunds_work.clone();
    let _payment = bus
        .participant(Participant::Payment, move |c| match c.phase {
            Phase::Compensation if !flag.load(Ordering::SeqCst) => {
                Answer::Transient("refund provider down".into())
            }
            _ => Answer::Succeed,
        })
        .await;
    let inventory = bus
        .participant(Participant::Inventory, |c| match (c.order_id.as_str(), c.phase) {
            ("stuck-1", Phase::Action) => Answer::Refuse("out_of_stock".into()),
            ("cancel-1", Phase::Action) => Answer::Silent,
            _ => Answer::Succeed,
        })
        .await;
    let _notification = bus.participant(Participant::Notification, |_| Answer::Succeed).await;

    let http = reqwest::Client::new();
    let place = |id: &str| {
        let request = http
            .post(format!("{api}/orders"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(order_json(id, &[("abc", 1)]));
        async move { assert_eq!(request.send().await.unwrap().status().as_u16(), 202) }
    };

    let driver = Driver::start();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }),
    );
    capabilities.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
    let browser = wait::until("chromedriver", Duration::from_secs(20), || async {
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&driver.url)
            .await
            .ok()
    })
    .await;

    // The detector works: an uncaught error is seen.
    browser.goto("about:blank").await.unwrap();
    browser
        .execute("setTimeout(() => { throw new Error('probe'); }, 0); return null;", vec![])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probe = script_errors(&browser).await;
    assert!(
        probe.iter().any(|e| e.contains("probe")),
        "the browser log does not show script errors: {probe:?}"
    );

    // Signed out, the console asks for the token once; a wrong one is refused.
    browser.goto(&format!("{api}/")).await.unwrap();
    let field = appears(&browser, "#token", Duration::from_secs(10)).await;
    screenshot(&browser, "0-sign-in").await;
    field.send_keys("not-the-token").await.unwrap();
    browser.find(Locator::Css("#login button")).await.unwrap().click().await.unwrap();
    let error = appears(&browser, "#login-error:not([hidden])", Duration::from_secs(10)).await;
    assert!(error.text().await.unwrap().contains("not the API token"));
    let field = browser.find(Locator::Css("#token")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(TOKEN).await.unwrap();
    browser.find(Locator::Css("#login button")).await.unwrap().click().await.unwrap();
    appears(&browser, "#overview", Duration::from_secs(10)).await;
    appears(&browser, "#live.on", Duration::from_secs(10)).await;
    assert_no_script_errors(&browser, "the overview").await;

    // An order placed over HTTP appears in the list and completes, without a reload.
    browser.goto(&format!("{api}/console/sagas")).await.unwrap();
    appears(&browser, "#live.on", Duration::from_secs(10)).await;
    mark(&browser).await;
    place("live-1").await;
    appears(&browser, r#"tr[data-order="live-1"][data-state="completed"]"#, Duration::from_secs(20)).await;
    assert_not_reloaded(&browser).await;
    screenshot(&browser, "2-sagas").await;
    assert_no_script_errors(&browser, "the list").await;

    // Its timeline: placed, then a reply from each participant.
    browser.find(Locator::Css(r#"tr[data-order="live-1"] a"#)).await.unwrap().click().await.unwrap();
    appears(&browser, "#timeline", Duration::from_secs(10)).await;
    let entries = browser.find_all(Locator::Css("#timeline tbody tr")).await.unwrap();
    assert!(entries.len() >= 4, "the timeline shows {} entries", entries.len());
    let timeline = browser.find(Locator::Css("#timeline")).await.unwrap().text().await.unwrap();
    for step in ["payment", "inventory", "notification"] {
        assert!(timeline.contains(&format!("{step} action replied")), "{timeline}");
    }
    let trace = browser.find(Locator::Css("[data-trace]")).await.unwrap().text().await.unwrap();
    assert_eq!(trace.len(), 32, "the trace id: {trace}");
    screenshot(&browser, "3-saga-timeline").await;
    assert_no_script_errors(&browser, "the saga page").await;

    // A stuck saga: retried from its page once refunds work, it ends compensated, live.
    place("stuck-1").await;
    browser.goto(&format!("{api}/console/sagas/stuck-1")).await.unwrap();
    appears(&browser, r#".actions[data-state="stuck"]"#, Duration::from_secs(30)).await;
    appears(&browser, "#live.on", Duration::from_secs(10)).await;
    screenshot(&browser, "4-stuck").await;
    mark(&browser).await;
    refunds_work.store(true, Ordering::SeqCst);
    click_and_confirm(&browser, r#"button[data-action="retry"]"#).await;
    appears(&browser, r#".actions[data-state="compensated"]"#, Duration::from_secs(20)).await;
    assert_not_reloaded(&browser).await;
    appears(&browser, ".flash", Duration::from_secs(5)).await;
    assert_no_script_errors(&browser, "the stuck saga's page").await;

    // A running saga, cancelled from its page: what was done is undone.
    place("cancel-1").await;
    wait::until("the reservation to be out", Duration::from_secs(10), || async {
        (!inventory.received_for("cancel-1").is_empty()).then_some(())
    })
    .await;
    browser.goto(&format!("{api}/console/sagas/cancel-1")).await.unwrap();
    appears(&browser, r#".actions[data-state="running"]"#, Duration::from_secs(10)).await;
    appears(&browser, "#live.on", Duration::from_secs(10)).await;
    mark(&browser).await;
    click_and_confirm(&browser, r#"button[data-action="cancel"]"#).await;
    appears(&browser, r#".actions[data-state="compensated"]"#, Duration::from_secs(20)).await;
    assert_not_reloaded(&browser).await;
    screenshot(&browser, "5-cancelled").await;
    assert_no_script_errors(&browser, "the cancelled saga's page").await;

    // The overview counts all of it; the dead-letter page answers.
    browser.goto(&format!("{api}/")).await.unwrap();
    appears(&browser, r#".card[data-state="compensated"]"#, Duration::from_secs(10)).await;
    let compensated = browser
        .find(Locator::Css(r#".card[data-state="compensated"] .n"#))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(compensated, "2");
    screenshot(&browser, "1-overview").await;
    browser.goto(&format!("{api}/console/dead-letters")).await.unwrap();
    appears(&browser, "#dead-letters table", Duration::from_secs(10)).await;
    screenshot(&browser, "6-dead-letters").await;
    assert_no_script_errors(&browser, "the overview and dead letters").await;

    let states: Value =
        http.get(format!("{api}/orders")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
    eprintln!("orders: {states}");
    browser.close().await.unwrap();
}
