//! The web dashboard as the browser meets it over HTTP: `/` and the assets
//! under `/app/` with their security headers, and the browser's sessions
//! (`/app/session`), whose refresh token travels only in the `m2m_refresh`
//! cookie.

use m2m_testkit::*;
use serde_json::{json, Value};

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The one `Set-Cookie` header of a response.
fn set_cookie(r: &reqwest::Response) -> String {
    let all: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert_eq!(all.len(), 1, "one Set-Cookie: {all:?}");
    all[0].to_str().unwrap().to_owned()
}

/// The attributes of a `Set-Cookie` value after its `name=value`.
fn attributes(cookie: &str) -> Vec<String> {
    cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_owned())
        .collect()
}

/// The value of the `m2m_refresh` cookie a response sets.
fn refresh_value(cookie: &str) -> String {
    cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("m2m_refresh="))
        .unwrap_or_else(|| panic!("not the refresh cookie: {cookie}"))
        .to_owned()
}

async fn web_login(app: &TestApp, username: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/app/session"))
        .json(&json!({"username": username, "password": PASSWORD}));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap()
}

/// `POST /app/session/refresh` with the cookie `value` (none if `None`).
async fn web_refresh(app: &TestApp, value: Option<&str>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/app/session/refresh"))
        .json(&json!({}));
    if let Some(value) = value {
        req = req.header("cookie", format!("m2m_refresh={value}"));
    }
    req.send().await.unwrap()
}

fn assert_security_headers(r: &reqwest::Response) {
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
}

#[tokio::test]
async fn the_root_and_app_redirect_to_the_dashboard() {
    let app = spawn_app().await;
    for path in ["/", "/app"] {
        let r = no_redirects().get(app.url(path)).send().await.unwrap();
        assert!(r.status().is_redirection(), "{path}: {}", r.status());
        assert_eq!(r.headers()["location"], "/app/", "{path}");
    }
}

#[tokio::test]
async fn the_dashboard_and_its_assets_are_served_with_their_types_and_policy() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/app/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_security_headers(&r);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let html = r.text().await.unwrap();

    // Every file the page names is served, with its type and the policy.
    let mut named = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let target = part.split('"').next().unwrap();
            if !target.starts_with('#') {
                named.push(target.to_owned());
            }
        }
    }
    assert!(named.iter().any(|n| n == "app.js"), "{named:?}");
    assert!(
        named.iter().any(|n| n.ends_with("uPlot.iife.min.js")),
        "{named:?}"
    );
    for name in &named {
        let r = app
            .client
            .get(app.url(&format!("/app/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert_security_headers(&r);
        let expected = if name.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(r.headers()["content-type"], expected, "{name}");
    }
    // uPlot's licence ships beside it.
    let uplot = named
        .iter()
        .find(|n| n.ends_with(".js") && n.contains("uplot"))
        .unwrap();
    let license = uplot.rsplit_once('/').unwrap().0.to_owned() + "/LICENSE";
    let r = app
        .client
        .get(app.url(&format!("/app/{license}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("MIT License"));
}

/// The policy forbids inline script and style: the page has none (the
/// browser would refuse it without saying so to the user).
#[tokio::test]
async fn the_dashboard_has_no_inline_script_or_style() {
    let app = spawn_app().await;
    let html = app
        .client
        .get(app.url("/app/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .to_ascii_lowercase();
    for tag in html.split("<script").skip(1) {
        let (open, rest) = tag.split_once('>').unwrap();
        assert!(open.contains("src="), "an inline script: <script{open}>");
        assert!(rest.starts_with("</script>"), "a script with content");
    }
    assert!(!html.contains("<style"), "an inline <style>");
    for word in html.split_whitespace() {
        assert!(!word.starts_with("style="), "a style attribute: {word}");
        assert!(
            !(word.starts_with("on") && word.contains('=')),
            "an inline event handler: {word}"
        );
    }
    let js = app
        .client
        .get(app.url("/app/app.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for forbidden in [
        ".style.",
        "setAttribute('style'",
        "cssText",
        "innerHTML",
        "eval(",
    ] {
        assert!(!js.contains(forbidden), "app.js uses {forbidden}");
    }
}

#[tokio::test]
async fn an_unknown_asset_is_a_problem_404_with_the_policy() {
    let app = spawn_app().await;
    for path in [
        "/app/nope.js",
        "/app/vendor/uplot-0.0.1/uPlot.iife.min.js",
        "/app/vendor/",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_security_headers(&r);
        assert_problem(r, 404, None).await;
    }
}

#[tokio::test]
async fn a_browser_login_puts_the_refresh_token_in_a_strict_http_only_cookie() {
    let app = spawn_app().await;
    app.register("ada").await;
    let r = web_login(&app, "ada", &[]).await;
    assert_eq!(r.status(), 200);
    assert_security_headers(&r);
    let cookie = set_cookie(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["role"], "patient");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let claims = token_claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["role"], "patient");

    assert!(refresh_value(&cookie).len() >= 43, "{cookie}");
    let attrs = attributes(&cookie);
    for expected in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/app/session",
        "Max-Age=2592000",
    ] {
        assert!(attrs.iter().any(|a| a == expected), "{expected}: {cookie}");
    }
    assert!(!attrs.iter().any(|a| a == "Secure"), "{cookie}");

    // Behind a proxy that took HTTPS, the cookie is Secure.
    let r = web_login(&app, "ada", &[("x-forwarded-proto", "https")]).await;
    assert_eq!(r.status(), 200);
    assert!(attributes(&set_cookie(&r)).iter().any(|a| a == "Secure"));
}

#[tokio::test]
async fn a_therapist_logs_in_from_the_browser_as_a_therapist() {
    let app = spawn_app().await;
    app.therapist("dr.grace").await;
    let r = web_login(&app, "dr.grace", &[]).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["role"], "therapist");
}

#[tokio::test]
async fn the_cookie_rotates_and_a_spent_one_revokes_the_login() {
    let app = spawn_app().await;
    app.register("ada").await;
    let first = refresh_value(&set_cookie(&web_login(&app, "ada", &[]).await));

    let r = web_refresh(&app, Some(&first)).await;
    assert_eq!(r.status(), 200);
    let second = refresh_value(&set_cookie(&r));
    assert_ne!(first, second);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["role"], "patient");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(app.get(token, "/v1/games").await.status(), 200);

    // The spent cookie again: refused, the cookie cleared, and the whole
    // login revoked, so the cookie that replaced it is refused too.
    let r = web_refresh(&app, Some(&first)).await;
    let cleared = set_cookie(&r);
    assert_eq!(refresh_value(&cleared), "");
    assert!(attributes(&cleared).iter().any(|a| a == "Max-Age=0"));
    assert_problem(r, 401, None).await;
    assert_problem(web_refresh(&app, Some(&second)).await, 401, None).await;
}

#[tokio::test]
async fn a_refresh_without_a_cookie_is_401() {
    let app = spawn_app().await;
    assert_problem(web_refresh(&app, None).await, 401, None).await;
    assert_problem(web_refresh(&app, Some("not-a-token")).await, 401, None).await;
}

#[tokio::test]
async fn logout_clears_the_cookie_and_revokes_the_login() {
    let app = spawn_app().await;
    app.register("ada").await;
    let value = refresh_value(&set_cookie(&web_login(&app, "ada", &[]).await));
    let r = app
        .client
        .delete(app.url("/app/session"))
        .header("cookie", format!("m2m_refresh={value}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let cleared = set_cookie(&r);
    assert_eq!(refresh_value(&cleared), "");
    let attrs = attributes(&cleared);
    assert!(attrs.iter().any(|a| a == "Max-Age=0"), "{cleared}");
    assert!(attrs.iter().any(|a| a == "Path=/app/session"), "{cleared}");
    assert_problem(web_refresh(&app, Some(&value)).await, 401, None).await;

    // Without a cookie there is nothing to revoke: still 204.
    let r = app
        .client
        .delete(app.url("/app/session"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// A cross-site form can send a urlencoded, multipart or text body but not
/// JSON: the session routes take only JSON, and do nothing otherwise.
#[tokio::test]
async fn the_session_routes_take_only_json_bodies() {
    let app = spawn_app().await;
    app.register("ada").await;
    let value = refresh_value(&set_cookie(&web_login(&app, "ada", &[]).await));
    let cookie = format!("m2m_refresh={value}");
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/app/session",
            format!("username=ada&password={PASSWORD}"),
        ),
        (reqwest::Method::POST, "/app/session/refresh", String::new()),
        (reqwest::Method::DELETE, "/app/session", String::new()),
    ] {
        let r = app
            .client
            .request(method.clone(), app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &cookie)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("set-cookie").is_none(), "{method} {path}");
        assert_problem(r, 415, None).await;
    }
    // The cookie was neither spent nor revoked.
    assert_eq!(web_refresh(&app, Some(&value)).await.status(), 200);
}

/// The browser's login is the API's login: the same answers for wrong
/// credentials, and one failed-login limiter for both.
#[tokio::test]
async fn the_browser_login_shares_the_password_check_and_the_limiter() {
    let app = spawn_app_with(Options {
        login_limits: m2m_gateway::LoginLimits {
            per_username: 3,
            per_address: 100,
            window: std::time::Duration::from_secs(60),
        },
        ..Options::default()
    })
    .await;
    app.register("ada").await;
    for _ in 0..3 {
        let r = app
            .post_json(
                "/app/session",
                &json!({"username": "ada", "password": "wrong password!"}),
            )
            .await;
        assert!(r.headers().get("set-cookie").is_none());
        assert_problem(r, 401, None).await;
    }
    let r = app
        .post_json(
            "/v1/login",
            &json!({"username": "ada", "password": PASSWORD}),
        )
        .await;
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, 429, None).await;
    assert_problem(web_login(&app, "ada", &[]).await, 429, None).await;

    let r = app
        .post_json(
            "/app/session",
            &json!({"username": "ab", "password": PASSWORD}),
        )
        .await;
    assert_problem(r, 422, Some("username")).await;
}

#[tokio::test]
async fn the_session_routes_are_in_the_openapi_document() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    for (path, method, statuses) in [
        ("/app/session", "post", &["200", "401", "415", "429"][..]),
        ("/app/session/refresh", "post", &["200", "401", "415"][..]),
        ("/app/session", "delete", &["204", "415"][..]),
    ] {
        let op = &doc["paths"][path][method];
        assert_eq!(op["tags"], json!(["web"]), "{method} {path}: {op}");
        for status in statuses {
            assert!(
                op["responses"].get(*status).is_some(),
                "{method} {path}: no {status}"
            );
        }
        assert!(op.get("security").is_none(), "{method} {path}");
    }
}
