//! The event store against DynamoDB Local (through LocalStack).

mod common;

use chrono::{Duration, Utc};
use eventkit::envelope::EventMetadata;
use eventkit::{Appended, EventStore, RawEvent, StoreError};

async fn setup() -> EventStore {
    let client = aws_sdk_dynamodb::Client::new(&common::config().await);
    let table = common::event_store_table(&client).await;
    EventStore::new(client, table)
}

fn event(id: &str, n: u32) -> RawEvent {
    RawEvent {
        source: "it".into(),
        detail_type: "Counted".into(),
        metadata: EventMetadata {
            event_id: id.into(),
            schema_version: 1,
            correlation_id: "corr".into(),
            causation_id: None,
            occurred_at: Utc::now(),
        },
        data: serde_json::json!({ "n": n }),
    }
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn two_concurrent_appends_at_the_same_version_have_one_winner() {
    let store = setup().await;
    store.append("s", 0, &[event("e0", 0)]).await.unwrap();
    let (first, second) = ([event("a1", 1), event("a2", 2)], [event("b1", 1)]);
    let (a, b) = tokio::join!(store.append("s", 1, &first), store.append("s", 1, &second));
    let winners = [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count();
    assert_eq!(winners, 1, "{a:?} {b:?}");
    let loser = if a.is_ok() { b } else { a };
    assert!(
        matches!(loser, Err(StoreError::Conflict { expected: 1, .. })),
        "{loser:?}"
    );
    let stream = store.read_stream("s", 1).await.unwrap();
    let versions: Vec<u64> = stream.iter().map(|e| e.version).collect();
    assert_eq!(
        versions,
        (1..=stream.len() as u64).collect::<Vec<_>>(),
        "no gaps"
    );
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn a_conflict_reports_the_actual_version_and_a_reload_succeeds() {
    let store = setup().await;
    store
        .append("s", 0, &[event("x1", 1), event("x2", 2)])
        .await
        .unwrap();
    let err = store.append("s", 1, &[event("x3", 3)]).await.unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            stream_id: "s".into(),
            expected: 1,
            actual: 2
        }
    );
    let version = store.current_version("s").await.unwrap();
    let ok = store.append("s", version, &[event("x3", 3)]).await.unwrap();
    assert_eq!(ok.version, 3);
    // An expected version beyond the stream would leave a gap: refused.
    let err = store.append("s", 9, &[event("x4", 4)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: 3, .. }));
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn the_same_event_id_in_two_streams_is_two_events_both_stored() {
    let store = setup().await;
    let (a, b) = (event("shared", 1), event("shared", 2));
    store
        .append("order#a", 0, std::slice::from_ref(&a))
        .await
        .unwrap();
    let other = store
        .append("order#b", 0, std::slice::from_ref(&b))
        .await
        .unwrap();
    assert_eq!(other.written, vec!["shared".to_string()]);
    assert_eq!(
        store.read_stream("order#a", 1).await.unwrap()[0].to_raw(),
        a
    );
    assert_eq!(
        store.read_stream("order#b", 1).await.unwrap()[0].to_raw(),
        b
    );
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn the_same_event_again_in_its_stream_is_a_duplicate_and_the_rest_is_appended() {
    let store = setup().await;
    let first = event("dup", 1);
    store
        .append("s1", 0, std::slice::from_ref(&first))
        .await
        .unwrap();
    // A redelivery: another time, the same content.
    let mut again = first.clone();
    again.metadata.occurred_at += Duration::seconds(5);
    let fresh = event("fresh", 2);
    let appended = store
        .append("s1", 1, &[again, fresh.clone()])
        .await
        .unwrap();
    assert_eq!(
        appended,
        Appended {
            version: 2,
            written: vec!["fresh".into()],
            already_stored: vec!["dup".into()],
        }
    );
    let stream: Vec<RawEvent> = store
        .read_stream("s1", 1)
        .await
        .unwrap()
        .iter()
        .map(|e| e.to_raw())
        .collect();
    assert_eq!(stream, vec![first, fresh]);
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn other_content_under_a_stored_id_is_a_conflicting_duplicate_and_nothing_is_written() {
    let store = setup().await;
    store.append("s1", 0, &[event("dup", 1)]).await.unwrap();
    let err = store
        .append("s1", 1, &[event("other", 3), event("dup", 2)])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::ConflictingDuplicate {
            stream_id: "s1".into(),
            event_source: "it".into(),
            event_id: "dup".into(),
        }
    );
    assert_eq!(store.current_version("s1").await.unwrap(), 1);
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn streams_read_from_a_version_and_keep_type_version_and_metadata() {
    let store = setup().await;
    let events: Vec<_> = (1..=5).map(|i| event(&format!("r{i}"), i)).collect();
    store.append("order#r", 0, &events).await.unwrap();
    let tail = store.read_stream("order#r", 3).await.unwrap();
    assert_eq!(
        tail.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(tail[0].event_type, "Counted");
    assert_eq!(tail[0].schema_version, 1);
    assert_eq!(tail[0].metadata, events[2].metadata);
    assert_eq!(tail[0].data, serde_json::json!({"n": 3}));
    assert_eq!(tail[0].to_raw(), events[2]);
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn a_time_range_reads_every_stream_in_global_order_page_by_page() {
    let store = setup().await;
    let from = Utc::now() - Duration::seconds(1);
    let mut expected = Vec::new();
    for i in 0..7u32 {
        let id = format!("t{i}");
        let stream = format!("order#{}", i % 3);
        let version = store.current_version(&stream).await.unwrap();
        store
            .append(&stream, version, &[event(&id, i)])
            .await
            .unwrap();
        expected.push(id);
    }
    let to = Utc::now() + Duration::seconds(1);
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store.read_time_range(from, to, cursor, 3).await.unwrap();
        assert!(page.events.len() <= 3);
        seen.extend(page.events.into_iter().map(|e| e.event_id));
        pages += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, expected, "global time order across streams");
    assert!(pages >= 3, "paginated ({pages} pages)");
    // A window that ends before the events holds none of them.
    let none = store
        .read_all_between(from - Duration::hours(2), from)
        .await
        .unwrap();
    assert!(none.iter().all(|e| !expected.contains(&e.event_id)));
}

#[tokio::test]
#[ignore = "needs LocalStack: make test"]
async fn marked_events_are_listed_until_their_mark_is_cleared() {
    let client = aws_sdk_dynamodb::Client::new(&common::config().await);
    let table = common::event_store_table(&client).await;
    let store = EventStore::new(client, table).marking_unpublished("it.decisions");
    let mut decision = event("d1", 1);
    decision.source = "it.decisions".into();
    store
        .append("order#m", 0, &[event("f1", 0), decision])
        .await
        .unwrap();
    let shard = eventkit::store::unpublished_shard("order#m");
    let later = Utc::now() + Duration::seconds(5);
    // The index is eventually consistent: wait for the mark to show.
    let mut marks = Vec::new();
    for _ in 0..50 {
        marks = store
            .unpublished_before(&shard, later, None, 10)
            .await
            .unwrap();
        if !marks.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let listed: Vec<(&str, u64)> = marks
        .iter()
        .map(|m| (m.stream_id.as_str(), m.version))
        .collect();
    assert_eq!(listed, vec![("order#m", 2)], "only the decision is marked");
    assert!(
        store
            .unpublished_before(&shard, marks[0].recorded_at, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "not listed before it was recorded"
    );
    assert!(
        store
            .unpublished_before(&shard, later, Some(&marks[0]), 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing after the last one"
    );
    let read = store.read_event("order#m", 2).await.unwrap().unwrap();
    assert_eq!(read.event_id, "d1");

    store.clear_unpublished("order#m", 2).await.unwrap();
    store.clear_unpublished("order#m", 2).await.unwrap();
    store.clear_unpublished("order#m", 9).await.unwrap();
    assert_eq!(
        store.read_stream("order#m", 1).await.unwrap().len(),
        2,
        "no item made at 9"
    );
    for _ in 0..50 {
        if store
            .unpublished_before(&shard, later, None, 10)
            .await
            .unwrap()
            .is_empty()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the cleared mark is still listed");
}
