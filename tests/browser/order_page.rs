use order_service_test_support::{header, spawn_app, TestApp, SAMPLE, SAMPLE_UID};
use serde_json::{json, Value};

use crate::webdriver::{Browser, ENTER};

/// Set to write `docs/order-page.png` from the order view.
const SAVE_SCREENSHOTS: &str = "SAVE_SCREENSHOTS";

/// The text of every `[data-field]` in the order view (the first of each name), and the page's state.
const READ_ORDER: &str = r##"
    const fields = {};
    for (const node of document.querySelectorAll("#order [data-field]")) {
        if (!(node.dataset.field in fields)) fields[node.dataset.field] = node.textContent;
    }
    const message = document.getElementById("message");
    return {
        visible: !document.getElementById("order").hidden,
        title: document.getElementById("order-title").textContent,
        amount: document.getElementById("order-amount").textContent,
        items: document.querySelectorAll("#items tbody tr").length,
        message: message.hidden ? null : message.dataset.kind,
        fields,
    };
"##;

/// Waits until the order view shows `uid`.
async fn wait_for_order(browser: &Browser, uid: &str) -> anyhow::Result<Value> {
    let script = format!(
        "const view = document.getElementById('order');
         return !view.hidden && document.getElementById('order-title').textContent === {uid} && true;",
        uid = json!(uid)
    );
    browser
        .wait_for(&format!("order {uid} to be shown"), &script)
        .await?;
    browser.execute(READ_ORDER, vec![]).await
}

/// Waits until the message of the given kind (`not-found`, `invalid`, `unavailable`) is shown; returns its text.
async fn wait_for_message(browser: &Browser, kind: &str) -> anyhow::Result<String> {
    let script = format!(
        "const m = document.getElementById('message');
         return !m.hidden && m.dataset.kind === {kind} && document.getElementById('order').hidden && m.textContent;",
        kind = json!(kind)
    );
    let text = browser
        .wait_for(&format!("the {kind} message"), &script)
        .await?;
    Ok(text.as_str().unwrap_or_default().to_owned())
}

/// Waits until the recent-orders list shows exactly these order uids, in this order.
async fn wait_for_listed(browser: &Browser, what: &str, uids: &[String]) -> anyhow::Result<()> {
    let script = format!(
        "const listed = [...document.querySelectorAll('#recent-list a')].map(a => a.dataset.uid);
         return JSON.stringify(listed) === {expected};",
        expected = json!(json!(uids).to_string())
    );
    browser.wait_for(what, &script).await?;
    Ok(())
}

/// Asserts that the page holds no element matching `selector` (what markup in the data would have made) and that
/// no script of the data ran (it would have set `window.injected`, or called the `alert` the test replaced).
async fn assert_nothing_injected(browser: &Browser, selector: &str) -> anyhow::Result<()> {
    let script = format!(
        "return {{
            elements: document.body.querySelectorAll({selector}).length,
            injected: window.injected === true,
        }};",
        selector = json!(selector)
    );
    let injected = browser.execute(&script, vec![]).await?;
    assert_eq!(injected, json!({ "elements": 0, "injected": false }));
    Ok(())
}

/// Types an id into the lookup field and presses Enter.
async fn look_up(browser: &Browser, id: &str) -> anyhow::Result<()> {
    let field = browser.find("#order-id").await?;
    field.clear().await?;
    field.send_keys(&format!("{id}{ENTER}")).await
}

/// Opens the public lookup page and waits until it has loaded.
async fn open_page(browser: &Browser, app: &TestApp, query: &str) -> anyhow::Result<()> {
    browser.goto(&format!("{}/{query}", app.address)).await?;
    browser
        .wait_for(
            "the page to load",
            "return document.readyState === 'complete';",
        )
        .await?;
    Ok(())
}

/// Opens the operator page on the admin listener, types the admin token in as an operator would, and waits until
/// the recent orders and the dead letters have loaded with it.
async fn open_operator_page(browser: &Browser, app: &TestApp, query: &str) -> anyhow::Result<()> {
    browser
        .goto(&format!("{}/{query}", app.admin_address))
        .await?;
    browser
        .wait_for(
            "the operator page to load",
            "return document.readyState === 'complete';",
        )
        .await?;
    let field = browser.find("#admin-token").await?;
    field
        .send_keys(&format!("{}{ENTER}", app.admin_token))
        .await?;
    browser
        .wait_for(
            "the recent orders and dead letters to load with the token",
            // Each list's status line is empty once a page was shown, or says there is nothing.
            "const recent = document.getElementById('recent-message').textContent;
             const dead = document.getElementById('dead-letters-message').textContent;
             const done = (t) => t === '' || t.startsWith('No ');
             return document.getElementById('recent-list').getAttribute('aria-busy') === null
                    && done(recent) && done(dead);",
        )
        .await?;
    Ok(())
}

#[actix_web::test]
async fn the_sample_is_looked_up_by_id_and_shown_as_a_person_reads_an_order() -> anyhow::Result<()>
{
    // Arrange
    let app = spawn_app().await?;
    app.publish_sample().await?;
    let browser = Browser::start(1280, 1100).await?;
    open_page(&browser, &app, "").await?;

    // Act: type the id and press Enter, as a person would.
    look_up(&browser, SAMPLE_UID).await?;
    let shown = wait_for_order(&browser, SAMPLE_UID).await?;

    // Assert: the fields a person reads.
    let expected = [
        ("order_uid", SAMPLE_UID),
        ("track_number", "WBILMTESTTRACK"),
        ("customer_id", "test"),
        ("date_created", "2021-11-26 06:22:19 UTC"),
        ("status", "202"),
        ("delivery.name", "Test Testov"),
        ("delivery.city", "Kiryat Mozkin"),
        ("payment.currency", "USD"),
        ("payment.goods_total", "317 USD"),
        ("payment.delivery_cost", "1,500 USD"),
        ("payment.amount", "1,817 USD"),
        ("name", "Mascaras"),
        ("brand", "Vivienne Sabo"),
        ("price", "453 USD"),
        ("sale", "\u{2212}30%"),
        ("total_price", "317 USD"),
    ];
    for (field, value) in expected {
        assert_eq!(shown["fields"][field], value, "field {field}: {shown}");
    }
    assert_eq!(shown["amount"], "1,817 USD", "the amount in the header");
    assert_eq!(shown["items"], 1, "one item row");
    assert_eq!(shown["message"], Value::Null, "no message with an order");
    let url = browser.current_url().await?;
    assert!(
        url.ends_with(&format!("/?id={SAMPLE_UID}")),
        "a deep link: {url}"
    );
    if std::env::var_os(SAVE_SCREENSHOTS).is_some() {
        // Without the caret and focus ring of the field just typed in.
        browser
            .execute("document.activeElement.blur();", vec![])
            .await?;
        let png = browser.screenshot().await?;
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/docs/order-page.png"),
            png,
        )?;
    }

    // Assert: the raw JSON is one click away and is the order as published.
    browser.find("#raw summary").await?.click().await?;
    let raw = browser
        .wait_for(
            "the raw JSON to open",
            "const pre = document.getElementById('raw-json');
             return pre.offsetHeight > 0 && pre.textContent;",
        )
        .await?;
    let raw: Value = serde_json::from_str(raw.as_str().unwrap_or_default())?;
    assert_eq!(raw, serde_json::from_str::<Value>(SAMPLE)?);

    // Assert: the copy button copies it.
    browser.find("#copy-json").await?.click().await?;
    let copied = browser
        .wait_for(
            "the copy to be confirmed",
            "return document.getElementById('copy-result').textContent;",
        )
        .await?;
    assert_eq!(copied, "Copied to the clipboard.");

    // Assert: the deep link survives a reload.
    browser.refresh().await?;
    let reloaded = wait_for_order(&browser, SAMPLE_UID).await?;
    assert_eq!(reloaded["fields"]["track_number"], "WBILMTESTTRACK");

    browser.quit().await
}

#[actix_web::test]
async fn markup_in_an_order_is_shown_as_text_and_never_becomes_elements() -> anyhow::Result<()> {
    // Arrange: a valid, consistent order whose text fields hold markup and script.
    let app = spawn_app().await?;
    let image = "<img src=x onerror=alert(1)>";
    let bold = "<b>bold</b>";
    let script = "<script>window.injected = true</script>";
    let italic = "<i>x</i>";
    let mut order: Value = serde_json::from_str(SAMPLE)?;
    order["order_uid"] = json!("markup-order");
    order["customer_id"] = json!(italic);
    order["delivery"]["name"] = json!(image);
    order["delivery"]["city"] = json!("\"><svg onload=alert(2)>");
    order["items"][0]["name"] = json!(bold);
    order["items"][0]["brand"] = json!(script);
    app.publish(serde_json::to_vec(&order)?).await?;
    app.served("markup-order").await?;
    let browser = Browser::start(1280, 900).await?;
    open_page(&browser, &app, "").await?;
    // Any alert would also fail every later WebDriver command ("unexpected alert open").
    browser
        .execute("window.alert = () => { window.injected = true; };", vec![])
        .await?;

    // Act
    look_up(&browser, "markup-order").await?;
    let shown = wait_for_order(&browser, "markup-order").await?;

    // Assert: the text, literally.
    for (field, value) in [
        ("customer_id", italic),
        ("delivery.name", image),
        ("delivery.city", "\"><svg onload=alert(2)>"),
        ("name", bold),
        ("brand", script),
    ] {
        assert_eq!(shown["fields"][field], value, "field {field}");
    }
    let public_lists = browser
        .execute(
            "return document.getElementById('recent-list') !== null;",
            vec![],
        )
        .await?;
    assert_eq!(public_lists, false, "the public page lists no orders");
    open_operator_page(&browser, &app, "").await?;
    browser
        .execute("window.alert = () => { window.injected = true; };", vec![])
        .await?;
    let recent_meta = browser
        .execute(
            "return document.querySelector('#recent-list .r-meta').textContent;",
            vec![],
        )
        .await?;
    assert!(
        recent_meta.as_str().is_some_and(|m| m.starts_with(italic)),
        "the recent list shows the customer as text: {recent_meta}"
    );

    // Assert: no element came from the data and nothing ran.
    assert_nothing_injected(&browser, "img, b, i, svg, script").await?;

    browser.quit().await
}

#[actix_web::test]
async fn unknown_invalid_and_unreachable_lookups_each_say_what_happened() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;
    app.publish_sample().await?;
    let browser = Browser::start(1280, 900).await?;
    open_page(&browser, &app, "").await?;

    // Act + Assert: an id nobody has.
    look_up(&browser, "nosuchorder").await?;
    let text = wait_for_message(&browser, "not-found").await?;
    assert!(text.contains("nosuchorder"), "{text}");

    // Act + Assert: the back button walks the history: the not-found id, then the empty page.
    look_up(&browser, SAMPLE_UID).await?;
    wait_for_order(&browser, SAMPLE_UID).await?;
    browser.back().await?;
    wait_for_message(&browser, "not-found").await?;
    browser.back().await?;
    browser
        .wait_for(
            "the welcome view",
            "return !document.getElementById('welcome').hidden && document.getElementById('order').hidden
                    && document.getElementById('message').hidden;",
        )
        .await?;

    // Act + Assert: an id that can never exist is refused in the page, without asking the server.
    look_up(&browser, "not an id!").await?;
    let text = wait_for_message(&browser, "invalid").await?;
    assert!(text.contains("not an id!"), "{text}");
    let asked = browser
        .execute(
            "return performance.getEntriesByType('resource').some(e => e.name.includes('/order/not'));",
            vec![],
        )
        .await?;
    assert_eq!(asked, false, "the page checks the id itself");
    let invalid = browser
        .execute(
            "return document.getElementById('order-id').getAttribute('aria-invalid');",
            vec![],
        )
        .await?;
    assert_eq!(invalid, "true", "the field is marked invalid");

    // Act + Assert: a deep link with markup in it shows the invalid state, the markup as text.
    open_page(&browser, &app, "?id=%3Cb%3Ex%3C%2Fb%3E").await?;
    let text = wait_for_message(&browser, "invalid").await?;
    assert!(text.contains("<b>x</b>"), "{text}");
    let bold = browser
        .execute("return document.body.querySelectorAll('b').length;", vec![])
        .await?;
    assert_eq!(bold, 0, "the id stays text");

    // Act + Assert: the service is down.
    app.stop().await?;
    look_up(&browser, SAMPLE_UID).await?;
    let text = wait_for_message(&browser, "unavailable").await?;
    assert!(text.contains("Service unavailable"), "{text}");
    browser.find("#message button").await?;

    browser.quit().await
}

#[actix_web::test]
async fn recent_orders_are_listed_newest_first_paged_and_open_on_click() -> anyhow::Result<()> {
    // Arrange: more orders than one page of the list (10).
    let app = spawn_app().await?;
    let mut rng = rand::rng();
    let orders: Vec<Vec<u8>> = (0..12)
        .map(|_| order_service::domain::generator::valid_order_json(&mut rng))
        .collect();
    app.publish_all(orders).await?;
    app.wait_for_rows("orders", 12).await?;
    let newest_first: Vec<String> = app
        .admin_get("/orders?limit=12")
        .await?
        .json::<Vec<Value>>()
        .await?
        .iter()
        .map(|o| o["order_uid"].as_str().unwrap_or_default().to_owned())
        .collect();
    let browser = Browser::start(1280, 900).await?;

    // Act + Assert: the first page.
    open_operator_page(&browser, &app, "").await?;
    wait_for_listed(&browser, "the newest ten", &newest_first[..10]).await?;

    // Act + Assert: older, then newer again.
    browser.find("#recent-older").await?.click().await?;
    wait_for_listed(&browser, "the older page", &newest_first[10..]).await?;
    let buttons = browser
        .execute(
            "return [document.getElementById('recent-newer').disabled,
                     document.getElementById('recent-older').disabled];",
            vec![],
        )
        .await?;
    assert_eq!(
        buttons,
        json!([false, true]),
        "newer enabled, older disabled on the last page"
    );
    browser.find("#recent-newer").await?.click().await?;
    wait_for_listed(&browser, "the first page again", &newest_first[..10]).await?;

    // Act + Assert: a click opens the order and marks it in the list.
    let third = &newest_first[2];
    browser
        .find(&format!("#recent-list a[data-uid={}]", json!(third)))
        .await?
        .click()
        .await?;
    wait_for_order(&browser, third).await?;
    let current = browser
        .execute(
            "return document.querySelector('#recent-list a[aria-current=page]').dataset.uid;",
            vec![],
        )
        .await?;
    assert_eq!(current, json!(third));
    let url = browser.current_url().await?;
    assert!(url.ends_with(&format!("/?id={third}")), "{url}");

    browser.quit().await
}

#[actix_web::test]
async fn both_pages_and_their_files_are_served_with_strict_headers() -> anyhow::Result<()> {
    // Arrange
    let app = spawn_app().await?;

    for base in [&app.address, &app.admin_address] {
        // Act
        let page = reqwest::get(format!("{base}/")).await?;

        // Assert
        assert_page_headers(&page, base)?;
    }
    for (base, path, content_type) in [
        (&app.address, "/ui/app.js", "text/javascript; charset=utf-8"),
        (&app.address, "/ui/app.css", "text/css; charset=utf-8"),
        (
            &app.admin_address,
            "/ui/app.js",
            "text/javascript; charset=utf-8",
        ),
        (
            &app.admin_address,
            "/ui/admin.js",
            "text/javascript; charset=utf-8",
        ),
        (&app.admin_address, "/ui/app.css", "text/css; charset=utf-8"),
    ] {
        let response = reqwest::get(format!("{base}{path}")).await?;
        assert_eq!(response.status().as_u16(), 200, "{base}{path}");
        assert_eq!(
            header(&response, "content-type").as_deref(),
            Some(content_type),
            "{base}{path}"
        );
        assert_eq!(
            header(&response, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{base}{path}"
        );
    }
    Ok(())
}

fn assert_page_headers(page: &reqwest::Response, base: &str) -> anyhow::Result<()> {
    assert_eq!(page.status().as_u16(), 200, "{base}");
    assert_eq!(
        header(page, "content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let policy = header(page, "content-security-policy").unwrap_or_default();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy}");
    }
    assert!(!policy.contains("unsafe"), "nothing unsafe in {policy}");
    assert_eq!(
        header(page, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    Ok(())
}

#[actix_web::test]
async fn the_operator_page_lists_dead_letters_as_text_shows_one_in_full_and_replays_it(
) -> anyhow::Result<()> {
    // Arrange: a dead letter whose bytes hold markup and a customer's e-mail.
    let app = spawn_app().await?;
    let payload =
        r#"{"order_uid":"<img src=x onerror=alert(1)>","email":"jane.private@example.invalid"#;
    app.publish(payload.as_bytes().to_vec()).await?;
    app.wait_for_rows("rejected_messages", 1).await?;
    let browser = Browser::start(1280, 1000).await?;

    // Act + Assert: without the token the page says what is missing.
    browser.goto(&format!("{}/", app.admin_address)).await?;
    let refused = browser
        .wait_for(
            "the dead letters to be refused without the token",
            "const t = document.getElementById('dead-letters-message').textContent;
             return t.includes('token') && t;",
        )
        .await?;
    assert!(
        refused
            .as_str()
            .is_some_and(|t| t.contains("missing or wrong")),
        "{refused}"
    );

    // Act: with the token.
    open_operator_page(&browser, &app, "").await?;
    browser
        .execute("window.alert = () => { window.injected = true; };", vec![])
        .await?;
    let listed = browser
        .wait_for(
            "the dead letter to be listed",
            "const item = document.querySelector('#dead-letters-list li');
             return item !== null && item.textContent;",
        )
        .await?;

    // Assert: listed, shortened, as text.
    let listed = listed.as_str().unwrap_or_default().to_owned();
    assert!(listed.contains("malformed_json"), "{listed}");
    assert!(
        !listed.contains("jane.private"),
        "the listing shortens the payload: {listed}"
    );

    // Act + Assert: the full record on demand, still text.
    browser
        .find("#dead-letters-list li button.link")
        .await?
        .click()
        .await?;
    let full = browser
        .wait_for(
            "the full dead letter",
            "const p = document.getElementById('dead-letter-payload');
             return !document.getElementById('dead-letter').hidden && p.textContent.length > 0 && p.textContent;",
        )
        .await?;
    assert_eq!(full, json!(payload));

    // Act + Assert: replay, answered in the page and recorded.
    browser
        .find("#dead-letters-list li .dl-replay")
        .await?
        .click()
        .await?;
    let result = browser
        .wait_for(
            "the replay's answer",
            "const r = document.querySelector('#dead-letters-list li .dl-result').textContent;
             return r.startsWith('Replayed') && r;",
        )
        .await?;
    assert_eq!(result, json!("Replayed: rejected (malformed_json)"));
    let conn = app.db_pool.get().await?;
    let replays: i32 = conn
        .query_one("SELECT replay_count FROM rejected_messages", &[])
        .await?
        .get(0);
    assert_eq!(replays, 1);
    assert_nothing_injected(&browser, "img").await?;

    browser.quit().await
}
