//! The bounds every request passes, on a real socket with routes of the test's own: heavy pages
//! take turns, and a request that takes too long is cut off. Handlers wait on signals the test
//! gives, so nothing here waits for a clock.

use super::routes::{Access, Routes};
use super::{router_of, AppState};
use crate::auth::Action;
use crate::config::Deployment;
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

#[tokio::test]
async fn heavy_pages_take_turns_and_a_request_over_its_time_is_cut_off() -> anyhow::Result<()> {
    let t = crate::store::testing::sqlite().await?;
    let config = "[http]\nheavy_pages = 1\nheavy_wait = \"0s\"\nrequest_timeout = \"300ms\"\n";
    let d = Deployment::from_str_with_env("t.toml", config, &[], &Default::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let state = AppState::new(Arc::new(d), t.store.clone(), Arc::new(Metrics::new()));
    let gate = Arc::new(Notify::new());
    let (entered_tx, mut entered) = mpsc::channel::<()>(4);
    let held = {
        let gate = Arc::clone(&gate);
        move || async move {
            let _ = entered_tx.send(()).await;
            gate.notified().await;
            "held page"
        }
    };
    let view = Access::fleet(Action::ViewFleet);
    let routes = Routes::new()
        .get("/held", view, held)
        .heavy()
        .get("/other-heavy", view, || async { "other heavy page" })
        .heavy()
        .get("/light", view, || async { "light page" })
        .get("/stuck", view, std::future::pending::<&'static str>);
    let app = router_of(routes, state).into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = crate::http::testing::client_with_token(
        &crate::store::testing::admin_token(&t.store).await?,
    );
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    // The one turn is taken by a page that is still being served...
    let first = tokio::spawn(get("/held"));
    entered.recv().await.expect("the held page started");
    // ...so another heavy page is refused at once, as JSON that says to come back...
    let busy = get("/other-heavy").await?;
    assert_eq!(busy.status(), 503);
    let body: serde_json::Value = busy.json().await?;
    assert!(
        body["message"].as_str().unwrap_or("").contains("try again"),
        "{body}"
    );
    // ...while light pages are not held up by it.
    let light = get("/light").await?;
    assert_eq!(light.status(), 200);
    assert_eq!(light.text().await?, "light page");
    // The held page ends within its time and gives its turn back.
    gate.notify_one();
    let first = first.await??;
    assert_eq!(first.status(), 200);
    assert_eq!(first.text().await?, "held page");
    let next = get("/other-heavy").await?;
    assert_eq!(next.status(), 200);
    assert_eq!(next.text().await?, "other heavy page");

    // A request that does not finish within `request_timeout` is answered with 503, and the
    // service goes on serving.
    let stuck = get("/stuck").await?;
    assert_eq!(stuck.status(), 503);
    assert_eq!(get("/light").await?.status(), 200);
    server.abort();
    Ok(())
}
