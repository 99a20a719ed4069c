//! The retry budget: shared by clones, and fed only by answers from a healthy server. The
//! circuit breaker is off here: it would stop these outages' callers before the budget.

use super::*;

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_by_clones() {
    let api = Emulator::new();
    api.push_all((0..10).map(|_| Reply::unavailable()));
    let res = stack(&api, exact().budget(0.0, 0).no_circuit_breaker())
        .oneshot(get("/v1/x"))
        .await
        .unwrap();
    assert_eq!(info(&res).stop_reason(), StopReason::BudgetExhausted);
    assert_eq!(api.request_count(), 1);

    // A reserve of 1 retry a second (10 for the window) across 20 clones, during an outage.
    let api = Emulator::new();
    api.push_all((0..100).map(|_| Reply::unavailable()));
    let client = stack(
        &api,
        exact().budget(0.0, 1).max_attempts(5).no_circuit_breaker(),
    );
    let calls: Vec<_> = (0..20)
        .map(|_| tokio::spawn(client.clone().oneshot(get("/v1/x"))))
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), 503);
    }
    assert_eq!(api.request_count(), 20 + 10);
}

#[tokio::test(start_paused = true)]
async fn only_answers_from_a_healthy_server_buy_retries() {
    // A budget of 20% of healthy answers plus 1 retry a second (10 for the window).
    let api = Emulator::builder().no_rate_limit().build();
    let client = stack(
        &api,
        exact().budget(0.2, 1).max_attempts(2).no_circuit_breaker(),
    );
    // One retried GET opens the budget's window; its 200 is one healthy answer.
    api.push(Reply::unavailable());
    client.clone().oneshot(get("/v1/x")).await.unwrap();
    // An outage that begins with 500 final POST 500s (not retried: not idempotent).
    api.set_outage(Some(Reply::status(500)));
    for _ in 0..500 {
        let res = client.clone().oneshot(post("/v1/x", "{}")).await.unwrap();
        assert_eq!(info(&res).attempts(), 1);
    }
    let before = api.request_count();
    // Then 100 GETs: the 500s bought no retries, so only the reserve (less the one spent)
    // and a fifth of the single 200 are left, not another hundred.
    api.set_outage(Some(Reply::unavailable()));
    for _ in 0..100 {
        client.clone().oneshot(get("/v1/x")).await.unwrap();
    }
    let retries = api.request_count() - before - 100;
    assert_eq!(retries, 9, "{retries} retries");
}
