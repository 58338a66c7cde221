//! `hookrelay console`: its pages, actions and safety over plain HTTP against a real database
//! and worker; [`browser`] drives the same console in headless Chromium.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::{Receiver, TestDb};

/// A console served in this process for one test.
pub struct Served {
    pub addr: SocketAddr,
    cancel: CancellationToken,
}

impl Served {
    /// A console served by another process.
    pub fn at(addr: SocketAddr) -> Served {
        Served {
            addr,
            cancel: CancellationToken::new(),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Serves the console on a free loopback port, connected with `url`.
pub async fn serve(url: &str, token: Option<&str>) -> Served {
    let cancel = CancellationToken::new();
    let pool = hookrelay::db::pool(url, 2).expect("pool").pool;
    let addr = hookrelay::admin::console::serve(
        pool,
        "127.0.0.1:0".parse().unwrap(),
        token,
        cancel.clone(),
    )
    .await
    .expect("the console starts");
    Served { addr, cancel }
}

/// What came back.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn done(r: reqwest::RequestBuilder) -> Page {
    let response = r.send().await.expect("the console answers");
    Page {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap(),
    }
}

/// GET `path` with extra headers.
pub async fn get(s: &Served, path: &str, headers: &[(&str, &str)]) -> Page {
    let mut r = client().get(format!("http://{}{path}", s.addr));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    done(r).await
}

/// POST a form to `path` with extra headers.
pub async fn post(s: &Served, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut r = client()
        .post(format!("http://{}{path}", s.addr))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    done(r).await
}

/// The CSRF token a page's forms carry.
pub fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &page[at + 19..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// An endpoint that shapes its payloads, an event with HTML in it, delivered by a worker.
/// Returns the event id and its delivery id.
pub async fn delivered_event(db: &TestDb, receiver: &Receiver) -> (String, i64) {
    db.endpoint("crm", &receiver.url("/hooks"), "console-test-secret-value")
        .await;
    db.client
        .execute(
            "UPDATE hookrelay.endpoints SET redact_fields = $1 WHERE name = 'crm'",
            &[&json!({"*": {"email": "***@***"}})],
        )
        .await
        .unwrap();
    let id = db
        .emit(
            "order.paid",
            json!({"id": "42", "email": "ann@example.com", "note": "<script>alert(1)</script>"}),
        )
        .await;
    let worker = db.start_worker(db.config());
    let got = db
        .wait_count(
            "SELECT count(*) FROM hookrelay.deliveries WHERE state = 'delivered'",
            1,
            Duration::from_secs(20),
        )
        .await;
    worker.stop().await;
    assert_eq!(got, 1, "the event is delivered");
    let delivery: i64 = db
        .client
        .query_one("SELECT id FROM hookrelay.deliveries", &[])
        .await
        .unwrap()
        .get(0);
    (hookrelay::pipeline::payload::event_id(&id), delivery)
}

#[tokio::test]
async fn every_page_shows_what_an_operator_needs_and_escapes_payloads() {
    let db = TestDb::new().await;
    let receiver = Receiver::ok().await;
    let (event_id, delivery) = delivered_event(&db, &receiver).await;
    let console = serve(&db.url, None).await;

    the_overview_and_endpoint_pages_tell_the_story(&console).await;
    the_search_finds_by_event_id(&console, &event_id, delivery).await;
    the_delivery_page_shows_the_payload_as_sent(&console, &event_id, delivery).await;
}

/// The overview's counts, the endpoints' success rates, and crm's page with its secret's
/// fingerprint (never the secret) and its redaction rule.
async fn the_overview_and_endpoint_pages_tell_the_story(console: &Served) {
    let overview = get(console, "/", &[]).await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    for text in [
        "Due now",
        "Oldest pending",
        "Attempts per minute",
        "1 delivered, 0 failed",
        "No endpoint is failing",
    ] {
        assert!(
            overview.body.contains(text),
            "overview lacks {text:?}: {}",
            overview.body
        );
    }

    let endpoints = get(console, "/endpoints", &[]).await;
    assert!(
        endpoints.body.contains("href=\"/endpoints/crm\""),
        "{}",
        endpoints.body
    );
    assert!(
        endpoints.body.contains("100.0%"),
        "success rate: {}",
        endpoints.body
    );
    assert!(
        endpoints.body.contains("last hour: 1 delivered, 0 failed"),
        "sparkline: {}",
        endpoints.body
    );

    let crm = get(console, "/endpoints/crm", &[]).await;
    let fingerprint = hookrelay::sign::fingerprint("console-test-secret-value");
    assert!(
        crm.body.contains(&fingerprint),
        "secret fingerprint: {}",
        crm.body
    );
    assert!(
        !crm.body.contains("console-test-secret-value"),
        "never the secret itself"
    );
    assert!(
        crm.body
            .contains("{&quot;*&quot;:{&quot;email&quot;:&quot;***@***&quot;}}"),
        "{}",
        crm.body
    );
}

/// Searching by event id links the delivery, says when none matches and refuses a bad id.
async fn the_search_finds_by_event_id(console: &Served, event_id: &str, delivery: i64) {
    let found = get(console, &format!("/deliveries?event_id={event_id}"), &[]).await;
    assert_eq!(found.status, 200);
    assert!(
        found
            .body
            .contains(&format!("href=\"/deliveries/{delivery}\"")),
        "{}",
        found.body
    );
    let none = get(
        console,
        "/deliveries?event_id=evt_00000000-0000-7000-8000-000000000000",
        &[],
    )
    .await;
    assert!(none.body.contains("No delivery matches."));
    let bad = get(console, "/deliveries?event_id=evt_nope", &[]).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body
            .contains("is not an event id: give evt_ followed by a UUID"),
        "{}",
        bad.body
    );
}

/// The delivery page: the payload as crm got it, its attempt, and a 404 for an unknown one.
async fn the_delivery_page_shows_the_payload_as_sent(
    console: &Served,
    event_id: &str,
    delivery: i64,
) {
    let page = get(console, &format!("/deliveries/{delivery}"), &[]).await;
    assert_eq!(page.status, 200);
    // The payload as crm got it: redacted, and the HTML in it shown as text.
    assert!(
        page.body.contains("&quot;email&quot;:&quot;***@***&quot;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("ann@example.com"));
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("<script>"),
        "no markup from the payload"
    );
    assert!(page.body.contains(event_id));
    // Exactly the bytes sent, in the envelope's order (id first), not re-formatted.
    assert!(page.body.contains(&format!("<pre class=\"payload\">{{&quot;id&quot;:&quot;{event_id}&quot;,&quot;event&quot;:&quot;order.paid&quot;")), "{}", page.body);
    // The attempt: status, duration, the receiver's response.
    assert!(
        page.body.contains("<td class=\"num\">200</td>"),
        "{}",
        page.body
    );
    assert!(page.body.contains(" ms</td>"), "{}", page.body);

    let missing = get(console, "/deliveries/999999", &[]).await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("No delivery 999999"));
}

#[tokio::test]
async fn every_response_carries_strict_security_headers() {
    let db = TestDb::new().await;
    let console = serve(&db.url, None).await;
    for path in [
        "/",
        "/endpoints",
        "/deliveries",
        "/assets/console.css",
        "/nowhere",
    ] {
        let page = get(&console, path, &[]).await;
        let h = |name: &str| {
            page.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let csp = h("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'")
                && csp.contains("frame-ancestors 'none'")
                && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(h("x-frame-options").as_deref(), Some("DENY"), "{path}");
        assert_eq!(
            h("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            h("referrer-policy").as_deref(),
            Some("same-origin"),
            "{path}"
        );
        // No inline scripts or styles anywhere (the CSP would block them anyway).
        assert!(
            !page.body.contains("<script") && !page.body.contains("style="),
            "{path}"
        );
    }
    let css = get(&console, "/assets/console.css", &[]).await;
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
}

#[tokio::test]
async fn deliveries_page_by_key_newest_first_and_filters_combine() {
    let db = TestDb::new().await;
    db.endpoint("a", "https://a.example/hooks", "secret-a-12345")
        .await;
    db.endpoint("b", "https://b.example/hooks", "secret-b-12345")
        .await;
    // 130 deliveries written directly: 120 to a (every third one dead), 10 to b.
    db.client
        .batch_execute(
            "INSERT INTO hookrelay.events (event, created_at)
             SELECT CASE WHEN g % 2 = 0 THEN 'order.paid' ELSE 'order.created' END,
                    now() - (130 - g) * interval '1 minute'
             FROM generate_series(1, 130) g;
             INSERT INTO hookrelay.deliveries (event_id, endpoint_id, state, created_at)
             SELECT e.id, (SELECT id FROM hookrelay.endpoints WHERE name = CASE WHEN n <= 120 THEN 'a' ELSE 'b' END),
                    CASE WHEN n % 3 = 0 THEN 'dead' ELSE 'delivered' END, e.created_at
             FROM (SELECT id, created_at, row_number() OVER (ORDER BY created_at) n
                   FROM hookrelay.events) e;
             UPDATE hookrelay.events SET fanned_out_at = now();",
        )
        .await
        .unwrap();
    let console = serve(&db.url, None).await;
    let ids = walk(&console, "/deliveries?endpoint=a").await;
    assert_eq!(ids.len(), 120, "every delivery of a, once");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let dead = walk(
        &console,
        "/deliveries?endpoint=a&state=dead&event=order.paid",
    )
    .await;
    let want = db
        .count(
            "SELECT count(*) FROM hookrelay.deliveries d JOIN hookrelay.events e ON e.id = d.event_id
             WHERE d.endpoint_id = (SELECT id FROM hookrelay.endpoints WHERE name = 'a') AND d.state = 'dead' AND e.event = 'order.paid'",
        )
        .await;
    assert_eq!(dead.len() as i64, want);
    let recent = walk(&console, "/deliveries?from=2000-01-01T00:00&endpoint=b").await;
    assert_eq!(recent.len(), 10);
    let none = walk(&console, "/deliveries?until=2000-01-01").await;
    assert!(none.is_empty());
    let bad = get(&console, "/deliveries?state=lost", &[]).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body
            .contains("unknown state &quot;lost&quot;: use pending, delivered, dead or cancelled"),
        "{}",
        bad.body
    );
}

#[tokio::test]
async fn a_rare_event_name_is_found_by_its_index_not_by_walking_deliveries() {
    let db = TestDb::new().await;
    db.endpoint("a", "https://a.example/hooks", "secret-a-12345")
        .await;
    // 20,000 fanned-out events, 20 of them refund.issued, one delivery each.
    db.client
        .batch_execute(
            "INSERT INTO hookrelay.events (event, created_at, fanned_out_at)
             SELECT CASE WHEN g % 1000 = 0 THEN 'refund.issued' ELSE 'order.paid' END,
                    now() - (20000 - g) * interval '1 second', now()
             FROM generate_series(1, 20000) g;
             INSERT INTO hookrelay.deliveries (event_id, endpoint_id, state, created_at)
             SELECT e.id, (SELECT id FROM hookrelay.endpoints), 'delivered', e.created_at
             FROM hookrelay.events e;
             ANALYZE hookrelay.events, hookrelay.deliveries;",
        )
        .await
        .unwrap();
    let search = include_str!("../../sql/queries/console/deliveries.sql");
    let none = None::<String>;
    let no_time = None::<chrono::DateTime<chrono::Utc>>;
    let plan: Vec<String> = db
        .client
        .query(
            &format!("EXPLAIN {search}"),
            &[
                &none,
                &none,
                &Some("refund.issued"),
                &None::<uuid::Uuid>,
                &no_time,
                &no_time,
                &no_time,
                &None::<i64>,
                &51i64,
            ],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("events_fanned_out_by_name"),
        "the search reads the events of that name: {plan}"
    );
    let console = serve(&db.url, None).await;
    let found = walk(&console, "/deliveries?event=refund.issued").await;
    assert_eq!(found.len(), 20, "every refund.issued delivery, once");
}

#[test]
fn readme_shows_a_screenshot_of_every_page_from_the_browser_test() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    // The pages browser.rs photographs (its `shot` calls).
    let browser = std::fs::read_to_string(root.join("tests/it/console/browser.rs")).unwrap();
    // In the test itself (`shot(&b, "…")`) or in its steps (`shot(b, "…")`).
    let shots: Vec<&str> = browser
        .split("shot(")
        .skip(1)
        .filter_map(|r| r.strip_prefix("&b, \"").or(r.strip_prefix("b, \"")))
        .map(|r| &r[..r.find('"').unwrap()])
        .collect();
    assert_eq!(shots.len(), 5, "{shots:?}");
    for name in &shots {
        let link = format!("](docs/console/{name}.png)");
        assert!(readme.contains(&link), "README lacks {link}");
        let png = std::fs::read(root.join(format!("docs/console/{name}.png")))
            .unwrap_or_else(|e| panic!("docs/console/{name}.png: {e}"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}.png is a PNG");
    }
    for file in std::fs::read_dir(root.join("docs/console")).unwrap() {
        let file = file.unwrap().file_name().into_string().unwrap();
        let name = file.trim_end_matches(".png");
        assert!(
            shots.contains(&name),
            "docs/console/{file} is no page of the test"
        );
    }
}

/// Follows the "Older" links from `first`, returning the delivery ids listed, in order.
async fn walk(console: &Served, first: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut next = Some(first.to_string());
    for _ in 0..20 {
        let Some(path) = next.take() else { break };
        let page = get(console, &path, &[]).await;
        assert_eq!(page.status, 200, "{}", page.body);
        for part in page.body.split("<a href=\"/deliveries/").skip(1) {
            ids.push(part[..part.find('"').unwrap()].parse().unwrap());
        }
        next = page
            .body
            .split("<a rel=\"next\" href=\"")
            .nth(1)
            .map(|r| r[..r.find('"').unwrap()].replace("&amp;", "&"));
        assert!(next.as_deref().is_none_or(|n| !n.contains("offset")));
    }
    ids
}

mod actions;
mod browser;
mod safety;
