//! The host's `web_fetch` against real HTTP servers on loopback, listed explicitly in the
//! policy: what reaches the agent for each allowed, refused and cut request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use supervisor::app::daemon::web::fetch::{fetch, FetchError};
use supervisor::domain::instance::egress::EgressPolicy;

/// The headers each request brought, by path.
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn site(seen: Seen, other: Option<SocketAddr>) -> Router {
    let s = seen.clone();
    let log = move |path: &str, headers: &HeaderMap| {
        s.lock().unwrap().push((path.to_string(), headers.clone()));
    };
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    Router::new()
        .route(
            "/page",
            get(move |h: HeaderMap| async move {
                l1("/page", &h);
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html><body><h1>Release notes</h1><p>Version <b>2.0</b> is out.</p>\
                     <script>tracking()</script></body></html>",
                )
            }),
        )
        .route(
            "/json",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"ok":true}"#,
                )
            }),
        )
        .route(
            "/big",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "x".repeat(100_000)) }),
        )
        .route(
            "/png",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/png")],
                    vec![0x89u8, b'P', b'N', b'G', 0, 0],
                )
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                "never"
            }),
        )
        .route(
            "/away",
            get(move |h: HeaderMap| async move {
                l2("/away", &h);
                let to = match other {
                    Some(o) => format!("http://localhost:{}/landing", o.port()),
                    None => "http://unlisted.example/".to_string(),
                };
                Redirect::to(&to).into_response()
            }),
        )
        .route(
            "/landing",
            get(move |h: HeaderMap| async move {
                l3("/landing", &h);
                "landed"
            }),
        )
        .route(
            "/missing",
            get(|| async {
                Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(axum::body::Body::from("no"))
                    .unwrap()
            }),
        )
}

fn policy(json: serde_json::Value) -> EgressPolicy {
    let p: EgressPolicy = serde_json::from_value(json).unwrap();
    p.validate().unwrap();
    p
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[tokio::test]
async fn allowed_pages_arrive_as_text_and_everything_else_is_refused_or_cut() {
    let seen: Seen = Arc::default();
    let a = serve(site(seen.clone(), None)).await;
    let listed = format!("127.0.0.1:{}", a.port());
    let p = policy(serde_json::json!({
        "allow": [listed],
        "limits": {"response_bytes": "16k", "timeout": "2s"}
    }));
    let url = |path: &str| format!("http://{listed}{path}");

    // An allowed HTML page reaches the agent as text, without markup or scripts.
    let page = fetch(&p, &url("/page"), &no_env).await.unwrap();
    assert!(
        page.text.contains("Release notes") && page.text.contains("2.0"),
        "{}",
        page.text
    );
    assert!(
        !page.text.contains("<h1>") && !page.text.contains("tracking()"),
        "{}",
        page.text
    );
    assert_eq!(page.status, 200);
    // JSON as it is.
    assert_eq!(
        fetch(&p, &url("/json"), &no_env).await.unwrap().text,
        r#"{"ok":true}"#
    );

    // An oversized body is cut at the cap, with a note.
    let big = fetch(&p, &url("/big"), &no_env).await.unwrap();
    assert_eq!(big.bytes, 16 * 1024);
    assert!(
        big.text.ends_with("only its start was read]"),
        "{}",
        &big.text[big.text.len() - 120..]
    );

    // Binary is refused with a clear error.
    let e = fetch(&p, &url("/png"), &no_env).await.unwrap_err();
    assert!(matches!(e, FetchError::Binary(_)), "{e}");
    assert!(e.to_string().contains("image/png"), "{e}");

    // A slow server runs into the time cap.
    let e = fetch(&p, &url("/slow"), &no_env).await.unwrap_err();
    assert_eq!(e, FetchError::Timeout("2s".into()));

    // An error status is the server's answer, not text.
    let e = fetch(&p, &url("/missing"), &no_env).await.unwrap_err();
    assert!(matches!(e, FetchError::Status { status: 404, .. }), "{e}");

    // An unlisted host, and the same server on a name that is not listed.
    let e = fetch(&p, "http://unlisted.example/", &no_env)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("unlisted.example is not in this instance's egress.allow list"),
        "{e}"
    );
    let e = fetch(&p, &format!("http://localhost:{}/page", a.port()), &no_env)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "not_listed", "{e}");

    // A listed host redirecting to an unlisted one: the redirect is checked and refused.
    let e = fetch(&p, &url("/away"), &no_env).await.unwrap_err();
    assert!(e.to_string().contains("unlisted.example"), "{e}");

    // Only http(s).
    let e = fetch(&p, "file:///etc/passwd", &no_env).await.unwrap_err();
    assert_eq!(e.kind(), "scheme", "{e}");
}

#[tokio::test]
async fn private_and_loopback_addresses_need_the_exact_host_and_port() {
    let seen: Seen = Arc::default();
    let a = serve(site(seen.clone(), None)).await;
    // "*" is every public host: a private address or a name resolving to loopback is not one.
    let p = policy(serde_json::json!({"allow": ["*", "*.localhost"]}));
    let e = fetch(&p, "http://10.0.0.1/", &no_env).await.unwrap_err();
    assert!(e.to_string().contains("a private address"), "{e}");
    let e = fetch(&p, "http://169.254.169.254/latest/meta-data/", &no_env)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cloud metadata"), "{e}");
    let e = fetch(&p, "http://[::ffff:127.0.0.1]/", &no_env)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("loopback"), "{e}");
    // "localhost" resolves to loopback on the host; allowed only by a wildcard (every host on
    // the server's port), it is refused once resolved.
    let p = policy(serde_json::json!({"allow": [format!("*:{}", a.port())]}));
    let e = fetch(&p, &format!("http://localhost:{}/page", a.port()), &no_env).await;
    let e = e.unwrap_err();
    assert_eq!(e.kind(), "address", "{e}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the server"
    );
}

#[tokio::test]
async fn a_credential_reaches_only_its_own_host() {
    let seen_b: Seen = Arc::default();
    let b = serve(site(seen_b.clone(), None)).await;
    let seen_a: Seen = Arc::default();
    let a = serve(site(seen_a.clone(), Some(b))).await;
    let p = policy(serde_json::json!({
        "allow": [format!("127.0.0.1:{}", a.port()), format!("localhost:{}", b.port())],
        "credentials": [{"host": "127.0.0.1", "header": "X-Api-Key", "value_env": "WEB_TEST_KEY"}]
    }));
    let env = |name: &str| (name == "WEB_TEST_KEY").then(|| "s3cret-value".to_string());
    // A redirects to B on another host: B must not see A's credential.
    let landed = fetch(
        &p,
        &format!("http://127.0.0.1:{}/away?token=abc", a.port()),
        &env,
    )
    .await
    .unwrap();
    assert_eq!(landed.text, "landed");
    assert_eq!(
        landed.final_url,
        format!("http://localhost:{}/landing", b.port())
    );
    let a_seen = seen_a.lock().unwrap();
    assert_eq!(a_seen.len(), 1);
    assert_eq!(a_seen[0].1.get("x-api-key").unwrap(), "s3cret-value");
    let b_seen = seen_b.lock().unwrap();
    assert_eq!(b_seen.len(), 1);
    assert!(b_seen[0].1.get("x-api-key").is_none(), "{:?}", b_seen[0].1);
    assert!(!format!("{landed:?}").contains("s3cret"));
}
