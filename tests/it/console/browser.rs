//! The console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs) driven through WebDriver. Opens every page,
//! finds a delivery by its event id, redelivers it and sees the new attempt, disables and
//! enables an endpoint, checks that an HTML payload shows as text and that a wrong token
//! gets the 401 page. Screenshots of each page go to `$HOOKRELAY_CONSOLE_SCREENSHOTS` when
//! set (README's pictures: `HOOKRELAY_CONSOLE_SCREENSHOTS=docs/console`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::serve;
use crate::support::{free_addr, Receiver, Reply, TestDb};

const TOKEN: &str = "browser-test-token-0123456789";

/// chromedriver, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed when dropped (the browser's fresh profile).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn driver() -> Driver {
    let addr = free_addr();
    let child = Command::new("chromedriver")
        .arg(format!("--port={}", addr.port()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs: install Debian's chromium and chromium-driver (.ci/run does)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let profile = std::env::temp_dir().join(format!("hookrelay-chromium-{}", addr.port()));
    Driver {
        child,
        url: format!("http://{addr}"),
        _profile: TempDir(profile),
    }
}

async fn browser(driver: &Driver) -> Client {
    let profile = driver._profile.0.display().to_string();
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,1000", format!("--user-data-dir={profile}"),
            ]
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// The visible text of the page.
async fn text(b: &Client) -> String {
    b.find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The page's text once it says `needle` (a click's navigation may still be under way), for
/// at most 10 s.
async fn says(b: &Client, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = match b.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if body.contains(needle) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the page never says {needle:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Saves a screenshot of the page as `name`.png when screenshots are asked for.
async fn shot(b: &Client, name: &str) {
    let Ok(dir) = std::env::var("HOOKRELAY_CONSOLE_SCREENSHOTS") else {
        return;
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let png = b.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Three endpoints (billing always answers 500), a dozen events, and a worker running.
async fn busy_day(db: &TestDb) -> (Receiver, crate::support::RunningWorker) {
    let receiver = Receiver::with(|r, _| {
        Reply::status(if r.path.starts_with("/billing") {
            500
        } else {
            200
        })
    })
    .await;
    for name in ["crm", "billing", "search"] {
        db.endpoint(
            name,
            &receiver.url(&format!("/{name}")),
            "browser-test-secret",
        )
        .await;
    }
    db.client
        .execute(
            "UPDATE hookrelay.endpoints SET redact_fields = $1 WHERE name = 'crm'",
            &[&json!({"*": {"email": "***@***"}})],
        )
        .await
        .unwrap();
    for i in 0..12 {
        db.emit(
            "order.paid",
            json!({"id": i.to_string(), "email": "ann@example.com", "total": "12.50"}),
        )
        .await;
    }
    let worker = db.start_worker(db.config());
    db.wait_count(
        "SELECT count(*) FROM hookrelay.deliveries WHERE state <> 'pending'",
        36,
        Duration::from_secs(30),
    )
    .await;
    (receiver, worker)
}

#[tokio::test]
async fn an_operator_finds_redelivers_and_toggles_in_headless_chromium() {
    let db = TestDb::new().await;
    let (_receiver, worker) = busy_day(&db).await;
    let xss = db
        .emit("order.paid", json!({"id": "x", "note": "<script>alert('owned')</script><img src=x onerror=alert(2)>"}))
        .await;
    db.wait_count(
        "SELECT count(*) FROM hookrelay.deliveries WHERE state <> 'pending'",
        39,
        Duration::from_secs(30),
    )
    .await;
    let console = serve(&db.url, Some(TOKEN)).await;
    let base = format!("http://{}", console.addr);
    let driver = driver().await;
    let b = browser(&driver).await;

    sign_in_and_see_the_overview(&b, &base).await;
    b.goto(&format!("{base}/endpoints")).await.unwrap();
    assert!(text(&b).await.contains("failing"));
    shot(&b, "endpoints").await;
    let event_id = hookrelay::pipeline::payload::event_id(&xss);
    find_and_open_the_delivery(&b, &base, &event_id).await;
    the_payload_shows_as_text(&b).await;
    redeliver_and_see_the_second_attempt(&b).await;
    disable_and_enable_crm(&b, &base, &db).await;

    b.close().await.unwrap();
    worker.stop().await;
}

/// Without the token, or with a wrong one: the 401 page, nothing else. Signed in once, the
/// token leaves the address bar.
async fn sign_in_and_see_the_overview(b: &Client, base: &str) {
    b.goto(&format!("{base}/")).await.unwrap();
    assert!(
        text(b).await.contains("This console needs its token"),
        "{}",
        text(b).await
    );
    b.goto(&format!("{base}/?token=not-the-token-at-all"))
        .await
        .unwrap();
    assert!(text(b).await.contains("This console needs its token"));
    b.goto(&format!("{base}/?token={TOKEN}")).await.unwrap();
    assert_eq!(b.current_url().await.unwrap().as_str(), format!("{base}/"));
    let overview = text(b).await;
    assert!(
        overview.contains("Attempts per minute") && overview.contains("billing"),
        "{overview}"
    );
    shot(b, "overview").await;
}

/// Searches the delivery of the event to crm by its event id, and opens it.
async fn find_and_open_the_delivery(b: &Client, base: &str, event_id: &str) {
    b.goto(&format!("{base}/deliveries")).await.unwrap();
    shot(b, "deliveries").await;
    let form = b.form(Locator::Css("form.search")).await.unwrap();
    form.set_by_name("event_id", event_id).await.unwrap();
    form.set_by_name("endpoint", "crm").await.unwrap();
    form.submit().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("event_id=evt_")
    {
        assert!(Instant::now() < deadline, "the search did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    says(b, "Event id").await;
    let links = b.find_all(Locator::Css("td.num a")).await.unwrap();
    assert_eq!(
        links.len(),
        1,
        "one delivery of that event to crm: {}",
        text(b).await
    );
    links[0].click().await.unwrap();
    says(b, "Payload, as crm receives it").await;
    assert!(text(b).await.contains(event_id));
}

/// The HTML payload is text: no script element, no image, no alert.
async fn the_payload_shows_as_text(b: &Client) {
    let payload = b
        .find(Locator::Css("pre.payload"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        payload.contains("<script>alert('owned')</script><img src=x onerror=alert(2)>"),
        "{payload}"
    );
    assert!(b
        .find_all(Locator::Css("script, main img"))
        .await
        .unwrap()
        .is_empty());
    assert!(b.get_alert_text().await.is_err(), "no alert opened");
    shot(b, "delivery").await;
}

/// Redelivers the open delivery and watches the second attempt arrive.
async fn redeliver_and_see_the_second_attempt(b: &Client) {
    b.find(Locator::Css("form.action button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    says(b, "is scheduled again").await;
    let here = b.current_url().await.unwrap();
    let delivery_page = here.as_str().trim_end_matches("/redeliver").to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        b.goto(&delivery_page).await.unwrap();
        if text(b).await.contains("Attempts (2)") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no second attempt: {}",
            text(b).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Disables crm, then enables it again, from its page; the endpoints table follows.
async fn disable_and_enable_crm(b: &Client, base: &str, db: &TestDb) {
    b.goto(&format!("{base}/endpoints/crm")).await.unwrap();
    shot(b, "endpoint").await;
    b.find(Locator::Css("button.danger"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    says(b, "crm is disabled").await;
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints WHERE name = 'crm' AND active")
            .await,
        0
    );
    b.find(Locator::XPath("//button[text()='Enable']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    says(b, "crm is enabled").await;
    assert_eq!(
        db.count("SELECT count(*) FROM hookrelay.endpoints WHERE name = 'crm' AND active")
            .await,
        1
    );
}
