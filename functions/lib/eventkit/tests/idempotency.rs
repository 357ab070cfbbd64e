//! Idempotency against DynamoDB Local (through LocalStack): the conditional put, expiry,
//! in-progress expiry, payload validation and concurrent duplicates.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use eventkit::{Idempotency, IdempotencyError, Outcome};

const LONG: Duration = Duration::from_secs(30);

async fn setup() -> (aws_sdk_dynamodb::Client, String, Idempotency) {
    let client = aws_sdk_dynamodb::Client::new(&common::config().await);
    let table = common::idempotency_table(&client).await;
    let idem = Idempotency::new(client.clone(), &table, "it");
    (client, table, idem)
}

async fn put_record(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    id: &str,
    fields: &[(&str, AttributeValue)],
) {
    let mut req = client
        .put_item()
        .table_name(table)
        .item("id", AttributeValue::S(id.into()));
    for (k, v) in fields {
        req = req.item(*k, v.clone());
    }
    req.send().await.unwrap();
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn a_duplicate_gets_the_stored_result_without_running_again() {
    let (_, _, idem) = setup().await;
    let runs = AtomicUsize::new(0);
    let work = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(42u32)
    };
    let first = idem.run("k1", "payload", LONG, work).await.unwrap();
    let second = idem.run("k1", "payload", LONG, work).await.unwrap();
    assert_eq!(first, Outcome::Executed(42));
    assert_eq!(second, Outcome::Duplicate(42));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn concurrent_duplicates_run_the_work_once() {
    let (_, _, idem) = setup().await;
    let runs = AtomicUsize::new(0);
    let attempt = || {
        idem.run("same-key", "payload", LONG, || async {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, String>("done".to_string())
        })
    };
    let results = futures::future::join_all((0..8).map(|_| attempt())).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "work ran once");
    let executed = results
        .iter()
        .filter(|r| matches!(r, Ok(Outcome::Executed(_))))
        .count();
    let in_progress = results
        .iter()
        .filter(|r| matches!(r, Err(IdempotencyError::AlreadyInProgress(_))))
        .count();
    assert_eq!(executed, 1);
    assert_eq!(executed + in_progress, 8, "{results:?}");
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn the_same_key_with_another_payload_is_refused() {
    let (_, _, idem) = setup().await;
    idem.run("k", "one", LONG, || async { Ok::<_, String>(1) })
        .await
        .unwrap();
    let err = idem
        .run("k", "two", LONG, || async { Ok::<_, String>(2) })
        .await
        .unwrap_err();
    assert!(
        matches!(err, IdempotencyError::PayloadMismatch(_)),
        "{err:?}"
    );
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn a_failed_run_releases_the_key_for_a_retry() {
    let (_, _, idem) = setup().await;
    let err = idem
        .run("k", "p", LONG, || async { Err::<u32, _>("boom") })
        .await
        .unwrap_err();
    assert!(matches!(err, IdempotencyError::Work("boom")));
    let retry = idem
        .run("k", "p", LONG, || async { Ok::<_, &str>(7) })
        .await
        .unwrap();
    assert_eq!(retry, Outcome::Executed(7));
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn an_expired_completed_record_lets_the_work_run_again() {
    let (client, table, idem) = setup().await;
    let now = chrono::Utc::now().timestamp();
    let hash = eventkit::idempotency::payload_hash("p");
    put_record(
        &client,
        &table,
        &idem.record_key("k"),
        &[
            ("status", s("COMPLETED")),
            ("expiration", n(now - 10)),
            ("validation", s(&hash)),
            ("data", s("1")),
        ],
    )
    .await;
    let out = idem
        .run("k", "p", LONG, || async { Ok::<_, String>(2) })
        .await
        .unwrap();
    assert_eq!(out, Outcome::Executed(2));
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn an_in_progress_record_blocks_until_its_in_progress_expiry() {
    let (client, table, idem) = setup().await;
    let now = chrono::Utc::now();
    let hash = eventkit::idempotency::payload_hash("p");
    // Held by a live invocation: blocked.
    put_record(
        &client,
        &table,
        &idem.record_key("live"),
        &[
            ("status", s("INPROGRESS")),
            ("expiration", n(now.timestamp() + 3600)),
            ("in_progress_expiration", n(now.timestamp_millis() + 60_000)),
            ("validation", s(&hash)),
        ],
    )
    .await;
    let err = idem
        .run("live", "p", LONG, || async { Ok::<_, String>(1) })
        .await
        .unwrap_err();
    assert!(
        matches!(err, IdempotencyError::AlreadyInProgress(_)),
        "{err:?}"
    );
    // Held by an invocation whose time ran out (it died mid-way): taken over.
    put_record(
        &client,
        &table,
        &idem.record_key("dead"),
        &[
            ("status", s("INPROGRESS")),
            ("expiration", n(now.timestamp() + 3600)),
            ("in_progress_expiration", n(now.timestamp_millis() - 1)),
            ("validation", s(&hash)),
        ],
    )
    .await;
    let out = idem
        .run("dead", "p", LONG, || async { Ok::<_, String>(1) })
        .await
        .unwrap();
    assert_eq!(out, Outcome::Executed(1));
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn records_carry_expiry_for_ttl_and_the_result() {
    let (client, table, idem) = setup().await;
    let idem = idem.with_expiry(Duration::from_secs(120));
    idem.run("k", "p", LONG, || async { Ok::<_, String>(vec![1, 2]) })
        .await
        .unwrap();
    let item = client
        .get_item()
        .table_name(&table)
        .key("id", s(&idem.record_key("k")))
        .send()
        .await
        .unwrap();
    let item = item.item().unwrap();
    let expiration: i64 = item["expiration"].as_n().unwrap().parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now + 110..=now + 130).contains(&expiration),
        "expiration {expiration} vs now {now}"
    );
    assert_eq!(item["status"].as_s().unwrap(), "COMPLETED");
    assert_eq!(item["data"].as_s().unwrap(), "[1,2]");
}
